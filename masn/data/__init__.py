"""MASN data: TGIF-QA CSVs, MSVD-QA / MSRVTT-QA JSONs, vocabulary + GloVe, HDF5 video features."""
