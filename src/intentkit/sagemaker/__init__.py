"""Everything SageMaker, in one place.

The client side (runs on the user's machine, boto3 is the ``sagemaker`` extra):

* :mod:`~intentkit.sagemaker.session`: boto3 session, region, role, bucket, errors, dry runs.
* :mod:`~intentkit.sagemaker.jobs`: waiting on jobs (status lines, CloudWatch logs).
* :mod:`~intentkit.sagemaker.training_job`: ``train --target sagemaker``.
* :mod:`~intentkit.sagemaker.transform`: batch transform (``predict --target sagemaker``).
* :mod:`~intentkit.sagemaker.endpoint` (+ ``endpoint_requests``): real-time endpoints.
* :mod:`~intentkit.sagemaker.pack`: ``model.tar.gz`` for the intentkit or Hugging Face image.

What runs inside the image lives apart, in :mod:`intentkit.sagemaker.image`: the container
contract over ``/opt/ml`` (``intentkit container train|serve``) and the Hugging Face inference
handler shipped as ``code/inference.py``.
"""
