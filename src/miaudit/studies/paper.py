"""The seed study's published numbers (Daryani & Chadha, "Analyzing the Vulnerability of Machine
Learning Models against Membership Inference Attacks"), as data.

Every value is attack accuracy unless the metric says otherwise. Figures 1-3 of the paper are plots
without printed values: Figure 1 (shadows 2-9) has no numbers we can quote, Figure 2's ranges are
stated in the text, and Figure 3's data is Table 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["FINDINGS", "PAPER", "paper_value"]

_TABLE1 = {
    ("lr", 4): 0.6451, ("lr", 5): 0.6021, ("lr", 6): 0.6102, ("lr", 7): 0.6451,
    ("tree", 4): 0.6397, ("tree", 5): 0.6182, ("tree", 6): 0.5860, ("tree", 7): 0.6370,
    ("rbf-svm", 4): 0.6263, ("rbf-svm", 5): 0.6102, ("rbf-svm", 6): 0.6720, ("rbf-svm", 7): 0.6290,
    ("linear-svm", 4): 0.6021, ("linear-svm", 5): 0.5913, ("linear-svm", 6): 0.6962, ("linear-svm", 7): 0.6129,
}  # fmt: skip
_TABLE2 = {"accuracy": 0.6962, "precision": 0.6237, "recall": 0.9892}  # linear SVM, 6 shadows
_TABLE3 = {  # (target_size, n_shadows) -> accuracy, linear SVM
    (3000, 4): 0.6021, (3000, 5): 0.5913, (3000, 6): 0.6370, (3000, 7): 0.6129, (3000, 8): 0.6102,
    (6000, 4): 0.5054, (6000, 5): 0.5869, (6000, 6): 0.6331, (6000, 7): 0.6114, (6000, 8): 0.5054,
}  # fmt: skip
_FIGURE2_RANGES = {10: (0.5913, 0.6370), 5: (0.5160, 0.5506)}  # classes -> (min, max) over shadows 4-8
_TABLE4 = {  # (arch, n_shadows) -> accuracy, linear SVM
    ("dense", 2): 0.6370, ("dense", 3): 0.6370, ("dense", 4): 0.6075, ("dense", 5): 0.6344,
    ("dense", 6): 0.6263, ("dense", 7): 0.6370, ("dense", 8): 0.6263, ("dense", 9): 0.6317,
    ("dropout", 2): 0.5725, ("dropout", 3): 0.5672, ("dropout", 4): 0.5779, ("dropout", 5): 0.5000,
    ("dropout", 6): 0.5967, ("dropout", 7): 0.5698, ("dropout", 8): 0.6102, ("dropout", 9): 0.5860,
}  # fmt: skip

#: Everything published, read-only.
PAPER: Mapping[str, Any] = MappingProxyType(
    {
        "table1": MappingProxyType(_TABLE1),
        "table2": MappingProxyType(_TABLE2),
        "table3": MappingProxyType(_TABLE3),
        "figure2_ranges": MappingProxyType(_FIGURE2_RANGES),
        "table4": MappingProxyType(_TABLE4),
    }
)

#: The paper's findings, each tested by :mod:`miaudit.studies.findings`.
FINDINGS: tuple[dict[str, str], ...] = (
    {"id": "F1", "study": "1", "paper_ref": "Table 1",
     "claim": "6 shadow models with a linear SVM give the highest attack accuracy"},
    {"id": "F1b", "study": "1", "paper_ref": "Section 5.1",
     "claim": "the RBF-kernel SVM and the linear SVM perform comparably"},
    {"id": "F2", "study": "2", "paper_ref": "Figure 1",
     "claim": "more shadow models raise attack accuracy"},
    {"id": "F3", "study": "3", "paper_ref": "Table 3",
     "claim": "more training data (6,000 vs 3,000) lowers attack accuracy"},
    {"id": "F4", "study": "4", "paper_ref": "Figure 2",
     "claim": "fewer classes (5 vs 10) lower attack accuracy"},
    {"id": "F5a", "study": "5", "paper_ref": "Section 5.5",
     "claim": "an overfitted (dense) target leaks more than the simple network"},
    {"id": "F5b", "study": "5", "paper_ref": "Table 4, Figure 3",
     "claim": "dropout lowers attack accuracy against the dense network"},
    {"id": "F6", "study": "6", "paper_ref": "Section 6 (future work)",
     "claim": "shadows trained with another architecture than the target's lower attack accuracy"},
)  # fmt: skip


def paper_value(
    study: str, *, metric: str, attack_model: str, n_shadows: int, target_size: int, classes: int, arch: str
) -> float | None:
    """The paper's published value for one cell of our tables, or None where it has none.

    >>> paper_value("1", metric="accuracy", attack_model="linear-svm", n_shadows=6, target_size=3000,
    ...             classes=10, arch="simple")
    0.6962
    """
    if study in ("1", "5") and (target_size != 3000 or classes != 10):
        return None  # the paper's Tables 1, 2 and 4 are for 3,000 members and 10 classes
    if study == "1":
        if metric == "accuracy":
            return _TABLE1.get((attack_model, n_shadows))
        if attack_model == "linear-svm" and n_shadows == 6:
            return _TABLE2.get(metric)
        return None
    if metric != "accuracy" or attack_model != "linear-svm":
        return None
    if study == "3":
        return _TABLE3.get((target_size, n_shadows))
    if study == "5":
        return _TABLE4.get((arch, n_shadows))
    return None
