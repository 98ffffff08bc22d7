"""Training the series models: the patient classifier (per-slice features -> one PE probability)
and the slice refiner (every slice re-scored with its neighbours in view).

The seed paper flags a patient when one slice passes both stages; related work pools per-slice
CNN features over the whole series (max pooling, or a bidirectional LSTM that sees the slice
order) and learns the patient decision. Data flow: slice features of both stages from the slice
cache (``feature_series``; the features themselves: ``models.features``) -> the networks
(``models.series_nets``) trained by the shared epoch loop (``fit``) with an operating point set on
validation patients (``patient``, ``refiner``), from a manifest (``from_manifest``). Their inference
half, at triage: ``triage.series_models``.
"""
