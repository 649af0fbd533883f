"""The torch target: an unmodified PyTorch program recorded through torch's public seams.

``attach.py`` attaches and detaches (the API); one file per seam beside it.
What torch does not let it see: docs/torch-target.md.
"""
