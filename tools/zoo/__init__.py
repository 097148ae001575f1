"""Training and evidence for the embedded model zoo (``pytest_uoc.zoo`` holds only what loads it).

Run from the repository root, after ``pip install -e ".[zoo]"``::

    python -m tools.zoo.train                        # rebuild every model into pytest_uoc/zoo/weights
    python -m tools.zoo.evidence --out docs/zoo      # the figures and tables of docs/zoo.md

``train`` drives the stages, ``methods`` re-implements the unlearning methods,
``data`` renders the coloured digits and ``evidence`` measures the shipped zoo.
The architectures come from ``pytest_uoc.zoo.build`` (tests build them too).
"""
