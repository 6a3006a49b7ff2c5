"""The version of the zoo (the medzoo distribution), in one place: zoo.__version__, setup.py and
export sidecars read it here."""
__version__ = "0.1.0"
