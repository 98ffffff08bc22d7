"""Exceptions with messages meant for the user: name the file or series and the problem."""


class PETriageError(Exception):
    """Base class of every error PETriage raises on purpose."""


class SeriesError(PETriageError, ValueError):
    """A DICOM input cannot be turned into a trustworthy CT volume."""


class NoSeriesError(SeriesError):
    """The input holds no DICOM image at all (empty, or only other files): the CLIs exit 2."""


class NotAnalysableError(PETriageError):
    """The input loads but cannot be triaged (not CT, not axial, no lungs, ...)."""


class CheckpointError(PETriageError):
    """A model file is missing, tampered with, incompatible or does not fit its architecture."""


class AnatomyError(PETriageError, ValueError):
    """A real case cannot serve as phantom anatomy (mask missing, empty, unreadable, mismatched)."""
