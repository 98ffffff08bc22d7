"""Helpers the test suites share: synthetic DICOM, tiny checkpoints, tiny training sets."""
