"""The studies shipped with miaudit, as package data: ``study*.toml`` (one file per study) and ``README.md``.

``miaudit reproduce`` reads them through :func:`miaudit.studies.schema.default_config_dir`;
``miaudit studies list|show|export`` lists, prints and copies them. This package holds no code.
"""
