"""The seed study's published numbers (Daryani & Chadha, "Analyzing the Vulnerability of Machine
Learning Models against Membership Inference Attacks"), as data.

Every value is attack accuracy unless the metric says otherwise. Figures 1-3 of the paper are plots
without printed values: Figure 1 (shadows 2-9) has no numbers we can quote, Figure 2's ranges are
stated in the text, and Figure 3's data is Table 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["FINDINGS", "PAPER", "PaperFinding", "paper_value"]

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


@dataclass(frozen=True)
class PaperFinding:
    """One claim of the paper, the sign it predicts and the smallest effect that matters.

    Attributes
    ----------
    id, study, paper_ref, claim : str
        Its id (``"F3"``), the study that tests it, where the paper makes it, and the claim in words.
    direction : {+1, -1, 0}
        The sign the claim predicts for the finding's difference; 0 claims equivalence ("comparable").
    margin : float
        The smallest effect that matters, in the difference's units (attack accuracy, or for F2
        accuracy per added shadow model): differences within ``[-margin, +margin]`` are negligible.
    """

    id: str
    study: str
    paper_ref: str
    claim: str
    direction: int
    margin: float

    def as_record(self) -> dict[str, str]:
        """The finding's descriptive keys as ``findings.json`` writes them."""
        return {"id": self.id, "study": self.study, "claim": self.claim, "paper_ref": self.paper_ref}


# Margins. The paper's attack accuracies are counts out of 372 evaluation records (every printed
# value times 372 is an integer), so one record moves them by 0.0027 and a single cell's binomial
# standard error is about 0.025. One point of attack accuracy (0.01, four of the paper's records) is
# the smallest difference we call an effect: smaller ones are below what the paper could resolve and
# below what changes a defender's decision. Each comment gives the paper's own effect for scale.
#: The paper's findings, each tested by :mod:`miaudit.studies.findings`.
FINDINGS: tuple[PaperFinding, ...] = (
    # Table 1: 0.6962 against the runner-up 0.6720 (RBF SVM, 6 shadows), a lead of 0.024; a lead
    # under one point would make the pair one of several tied for the highest.
    PaperFinding("F1", "1", "Table 1", "6 shadow models with a linear SVM give the highest attack accuracy",
                 direction=+1, margin=0.01),
    # "Comparable" is an equivalence claim. Table 1's means over shadows 4-7 differ by +0.009 (RBF
    # 0.634, linear 0.626) and the four classifiers' means span 0.014; two points of accuracy cover
    # the gap the paper calls comparable with room for its own noise.
    PaperFinding("F1b", "1", "Section 5.1", "the RBF-kernel SVM and the linear SVM perform comparably",
                 direction=0, margin=0.02),
    # Figure 1 prints no numbers. One point of accuracy over its range of 2-9 shadows (seven added
    # models) is 0.01 / 7 = 0.0014 per shadow, rounded up to 0.0015.
    PaperFinding("F2", "2", "Figure 1", "more shadow models raise attack accuracy", direction=+1, margin=0.0015),
    # Table 3: 6,000 minus 3,000 records is -0.042 averaged over shadows 4-8.
    PaperFinding("F3", "3", "Table 3", "more training data (6,000 vs 3,000) lowers attack accuracy",
                 direction=-1, margin=0.01),
    # Figure 2's stated ranges: 5 classes 0.516-0.551 against 10 classes 0.591-0.637, about -0.08.
    PaperFinding("F4", "4", "Figure 2", "fewer classes (5 vs 10) lower attack accuracy", direction=-1, margin=0.01),
    # Section 5.5 states it in words; the paper's own numbers (Table 4 dense against Table 1's
    # linear SVM, shadows 4-7) differ by +0.001, so any effect of one point goes beyond them.
    PaperFinding("F5a", "5", "Section 5.5", "an overfitted (dense) target leaks more than the simple network",
                 direction=+1, margin=0.01),
    # Table 4: dropout minus dense is -0.057 averaged over shadows 2-9.
    PaperFinding("F5b", "5", "Table 4, Figure 3", "dropout lowers attack accuracy against the dense network",
                 direction=-1, margin=0.01),
    # Future work, no number: the same one point as the other accuracy differences.
    PaperFinding("F6", "6", "Section 6 (future work)",
                 "shadows trained with another architecture than the target's lower attack accuracy",
                 direction=-1, margin=0.01),
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
