"""Which DICOM modalities are images: shared by the study's words, its thumbnails and the share
form's priors button, so that all of them agree."""

# Series that carry notes about images rather than images: never a study's "kind" or thumbnail.
NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "DOC", "RTPLAN", "RTSTRUCT", "ECG"})
