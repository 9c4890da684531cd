"""hwlib — the helper package behind the notebooks of this report.

Modules, each doing one thing:

``config``     profiles (smoke / cpu / paper) and output paths
``data``       synthetic shapes (detection) and stick figures (keypoints)
``boxes``      box IoU and NMS
``metrics``    VOC AP, detection evaluation, PCK
``detector``   the multi-scale anchor detector, its targets, loss and decoding
``keypoints``  heatmap / regression / integral models and their codecs
``train``      the training loop shared by both parts
``receptive``  theoretical and effective receptive fields
``analysis``   head x size tables, anchor coverage, any-size confusion, keypoint failure types
``experiments`` train / predict / evaluate one model or a set of arms; load a model from its checkpoint
``evaluate``   ``python -m hwlib.evaluate CHECKPOINT``: any checkpoint on any data seed, the report's protocol
``zoo``        the model zoo (``models/``): bf16 copies of the headline checkpoints and their manifest
``plots``      every figure of the report
``report``     atomic writers for JSON results and their LaTeX macro twins
``pipeline``   papermill runner for the numbered notebooks
``bench``      throughput benchmark (only the settings this CPU runs natively)
``run``        train one model from the command line, single process or under torchrun
"""

__version__ = "0.1.0"
