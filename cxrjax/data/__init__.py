"""Layer 1, the data: the 14 findings, the NIH release's files, the split protocols, the shard format, the Grain
input pipeline, host→device prefetch, reading image files (PNG, JPEG, DICOM), and writing files whole (`atomic`).
Imports nothing else of cxrjax."""
