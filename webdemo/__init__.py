"""A local web page over the answer pipeline: upload a video, ask AVST or MASN, see the answer and attention."""
