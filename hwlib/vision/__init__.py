"""The science: synthetic data, boxes, the detector and the keypoint models with their codecs, metrics, receptive
fields, the training loop, and the analyses of predictions. It imports nothing of the study (:mod:`hwlib.study`)."""
