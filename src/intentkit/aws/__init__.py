"""SageMaker through boto3: session and errors (``session``), training jobs, batch transform.

Imported only by ``--target sagemaker`` code paths; boto3 is the ``sagemaker`` extra.
"""
