"""What runs inside the SageMaker image: `intentkit container train|serve` over `/opt/ml`, and the
Hugging Face inference handler (`hf_inference`, shipped as `code/inference.py`).

SageMaker runs the image with the single argument ``train`` or ``serve``. Every path lives under
one root (``/opt/ml``, moved by ``$INTENTKIT_OPT_ML`` for tests and local runs, read once when a
command starts); nothing else differs between tests and production.

* :mod:`~intentkit.sagemaker.image.paths`: the ``/opt/ml`` layout and SageMaker's JSON config files.
* :mod:`~intentkit.sagemaker.image.hyperparameters`: ``hyperparameters.json`` (all strings) -> typed
  ``intentkit train`` / ``data prepare`` options.
* :mod:`~intentkit.sagemaker.image.channels`: the data channel -> a prepared dataset folder.
* :mod:`~intentkit.sagemaker.image.training`: the training job (resume, multi-host, failure file).
* :mod:`~intentkit.sagemaker.image.serving`: serve ``/opt/ml/model`` on 0.0.0.0:8080.

Cf. https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
"""
