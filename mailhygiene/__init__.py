"""mailhygiene — make a company's mailbox obey its own retention policy."""

__version__ = "0.1.0"

__all__ = ["__version__"]
