"""A stand-in for marker-pdf's Python API (its weights are gigabytes and not available offline):
the three names ldrt calls, with their signatures, converting a PDF to a line that says which
file it read and from which model folder. Put its parent folder first on sys.path to use it."""
