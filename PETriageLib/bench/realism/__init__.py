"""How real the phantoms look: tissue HU, noise spectra and a classifier two-sample test against real CT
(`petriage phantom-realism`, docs/phantom.md "Realism")."""
