"""Patient-level classifiers over the cascade's slices: per-slice features -> one PE probability.

The seed paper flags a patient when one slice passes both stages; related work pools per-slice
CNN features over the whole series (max pooling, or a bidirectional LSTM that sees the slice
order) and learns the patient decision. Data flow: slice features (``features``) -> classifier
(``model``) -> trained and given an operating point on validation patients (``train``).
"""
