#!/bin/bash
# Rebuild the shipped, SD 1.x-faithful zoo (issue 21) into runs/sd1-install, two processes at a time on 2 cores:
# original (+VAE, judge), then both gold standards in parallel, then the methods per concept in parallel
# (76 minutes on 2 cores). The flags spell out train.py's defaults. Measure it before shipping with
# UOC_ZOO_DIR=runs/sd1-install uoc audit ...; ship it by copying digits/, variants/, judge.safetensors and
# manifest.json into pytest_uoc/zoo/weights (docs/zoo.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
A="--work runs/sd1 --out runs/sd1-install --steps 1600 --threads 1 --prediction-type epsilon --unet-style sd1
   --scheduler pndm --loss-weight snr+1 --train-text-encoder"
$PY -m tools.zoo.train $A --stages vae,original,judge
$PY -m tools.zoo.train $A --stages gold --concepts three > runs/gold-three.log 2>&1 &
$PY -m tools.zoo.train $A --stages gold --concepts red > runs/gold-red.log 2>&1
wait
$PY -m tools.zoo.train $A --stages methods --concepts three > runs/m-three.log 2>&1 &
$PY -m tools.zoo.train $A --stages methods --concepts red > runs/m-red.log 2>&1
wait
$PY -m tools.zoo.train $A --stages install
