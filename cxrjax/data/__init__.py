"""Layer 1, the data: the 14 findings, the NIH release's files, the split protocols, the shard format, the Grain
input pipeline, host→device prefetch, and reading image files (PNG, JPEG, DICOM). Imports nothing else of cxrjax."""
