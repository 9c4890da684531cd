"""hwlib — the package behind the notebooks of this report. Its folders are its layers; each imports only downward.

``hwlib/vision/`` — the science
    ``data`` synthetic shapes and stick figures · ``boxes`` IoU and NMS · ``detector`` the multi-scale anchor
    detector, its targets, loss and decoding · ``keypoints`` heatmap / regression / integral models and their
    codecs · ``metrics`` VOC AP, detection evaluation, PCK · ``receptive`` theoretical and effective receptive
    fields · ``train`` the training loop · ``analysis`` head x size tables, anchor coverage, failure types ·
    ``layers`` shared building blocks.

``hwlib/study/`` — the study that uses it
    ``splits`` the data splits · ``detection`` / ``keypointing`` train, predict and score each part's models ·
    ``codes`` what a run and an evaluation are (the code on their paths, the evaluation specs) · ``obtain`` one run,
    from the store, a checkpoint, or trained · ``arms`` sets of arms x seeds as paired records · ``store``,
    ``accepted``, ``lock``, ``plan``, ``stages``, ``verify``, ``equivalence`` the run store, its equivalences and
    its training plan · ``results`` records, intervals and verdicts · ``plots``, ``tables``, ``report``, ``readme``
    what the reader sees · ``pipeline``, ``bench``, ``recipe``, ``zoo``, ``evaluate``, ``launch``, ``failures``,
    ``checkpoints``, ``machine`` the rest of the study's machinery.

``hwlib/*.py`` — the public surface
    ``config`` (profiles and config dataclasses) and ``io`` (atomic writes) sit beneath every layer. The API
    modules SPEC names (``data``, ``boxes``, ``metrics``, ``detector``, ``keypoints``) re-export
    ``hwlib.vision``'s; the commands (``python -m hwlib.evaluate | verify | stages | bench | zoo | run | recipe |
    equivalence | pipeline | readme``) are entry points into ``hwlib.study``.
"""

__version__ = "0.1.0"
