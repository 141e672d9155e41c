"""Offline stand-in for the pip bootstrap script ansible-test downloads (get-pip.py).

ansible-test runs it in each new virtualenv with pip's install arguments, e.g.
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``. This installs pip from
the Python's own ensurepip, then the requested versions from the configured package index.
"""

import subprocess
import sys

# get-pip.py's own switches; pip install does not know them.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
pip_arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *pip_arguments])
