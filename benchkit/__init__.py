"""Fixtures shared by the parity checks, the benchmarks, the GPU check (``scripts/``) and the tests.

``batches``: random MASN and AVST batches at given sizes, in the layout the datasets give the tasks;
``weights``: weight perturbation, so that parity is checked on non-trivial weights; ``timing``: ours
and a reference timed alternately (median, ratio); ``originals``: the authors' code imported from a
checkout the user names (``--original``). Nothing in the packages above imports it.
"""
