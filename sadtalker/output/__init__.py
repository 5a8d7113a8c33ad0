"""Output: full-mode paste-back into the photo and the H.264/AAC MP4 encoder."""
