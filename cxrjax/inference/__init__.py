"""Layer 7 (beside training, which it does not import): predicting image files, Grad-CAM and its overlays, CAM boxes
against expert boxes."""
