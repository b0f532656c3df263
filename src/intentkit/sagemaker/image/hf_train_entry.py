"""Entry script of a training job on the Hugging Face PyTorch training image (``--image
huggingface``), shipped as ``intentkit_train.py`` in the job's ``sourcedir.tar.gz``.

The SageMaker training toolkit in that image (https://github.com/aws/sagemaker-training-toolkit,
``src/sagemaker_training/entry_point.py``) extracts the archive named by the hyperparameter
``sagemaker_submit_directory`` into ``/opt/ml/code``, runs ``pip install -r requirements.txt``
there, then ``python intentkit_train.py --KEY VALUE ...`` (hyperparameter ``sagemaker_program``)
with ``SM_*`` environment variables. The archive's ``intentkit/`` is the package itself, so
nothing has to be installed from an index but its dependencies.

This script runs exactly what intentkit's own image runs (``intentkit container train``): it
reads ``hyperparameters.json`` and the channels under the ``/opt/ml`` tree itself, so the
command-line arguments, which repeat ``hyperparameters.json``, are ignored. The tree is
``$INTENTKIT_OPT_ML``, else the parent of ``$SM_MODEL_DIR`` (``/opt/ml/model``), else ``/opt/ml``.
"""

import os
import sys


def main() -> None:
    """Put the shipped ``intentkit/`` first on the path and run ``intentkit container train``
    (as ``python -m intentkit container train``; it exits with the command's code)."""
    here = os.path.dirname(os.path.abspath(__file__))
    # First on this process's path and, through PYTHONPATH, on the torchrun workers' that a
    # multi-host job starts (they run `python -m intentkit train` from another directory).
    sys.path.insert(0, here)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))
    model_dir = os.environ.get("SM_MODEL_DIR")
    if not os.environ.get("INTENTKIT_OPT_ML") and model_dir:
        os.environ["INTENTKIT_OPT_ML"] = os.path.dirname(os.path.normpath(model_dir))
    import runpy

    sys.argv = ["intentkit", "container", "train"]  # the toolkit's --KEY VALUE arguments go
    runpy.run_module("intentkit", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
