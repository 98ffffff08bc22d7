"""PETriage as a DICOM node: a Storage SCP that spools what it receives (spool, series_queue),
triages each complete series (worker) and stores the DICOM results back (send). Consumer of the
steps; `petriage listen` and `petriage queue` are its front ends."""
