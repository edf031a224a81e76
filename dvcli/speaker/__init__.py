"""The CAM++ speaker encoder as dv uses it: the encoder front end, its training data, speaker verification."""
