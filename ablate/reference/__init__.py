"""The paper's facts, shipped with the package: Table 5 (``table5.csv``, read by ``table5.py``) and the
ImageNet-100 class list."""
