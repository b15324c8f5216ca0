"""Experiment design: which runs to train next, and simulations that score designs.

Pure numpy/scipy/pandas (never imports torch). The flow: a forecaster fits
the runs (:mod:`~lmscale.design.forecaster`); the criterion scores candidate
runs by the expected narrowing of the forecast interval at a target per
FLOP (:mod:`~lmscale.design.criterion`); :mod:`~lmscale.design.grow` proposes
runs and grows a study round by round; :mod:`~lmscale.design.simulate`
draws synthetic studies from a known law to score designs.
"""
