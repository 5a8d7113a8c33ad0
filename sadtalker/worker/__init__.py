"""The job around the pipeline: input options, settings, downloads, media decoding, storage, start-up checks."""
