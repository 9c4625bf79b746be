"""Fixtures shared by the parity checks, the benchmarks, the GPU check (``scripts/``) and the tests.

``batches``: random MASN and AVST batches at given sizes, in the layout the datasets give the tasks;
``weights``: weight perturbation, so that parity is checked on non-trivial weights; ``timing``: ours
and a reference timed alternately (median, ratio); ``originals``: the authors' code imported from a
checkout the user names (``--original``); ``cli_features``: the extractor CLIs' files, the reference the
answerers' in-memory features are checked against; ``tiny_checkpoints``: tiny random AVST and MASN
checkpoints and the web demo's flags for them; ``browser``: the web page driven in headless chromium
(the browser test and ``scripts/web_screenshot.py``). Nothing in the packages above imports it.
"""
