"""Data in: watch-dir files, JSON rows, the streamer, the operator and the publisher."""
