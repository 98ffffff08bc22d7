"""Screening a whole archive: every series of a source (a folder tree, a manifest, a DICOMweb
server) screened by workers (Ray actors, or this process), results kept in a restartable store.

sources.py lists the series; dicomweb.py talks QIDO-RS/WADO-RS; screener.py screens one series;
actors.py runs workers on Ray; store.py is the results table and the report folders; run.py is
the driver; archive_summary.py what a run did.
"""
