import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import libvirt_env  # noqa: E402


@pytest.fixture(scope="session")
def libvirt_host():
    """A running libvirtd, held under the host lock for the whole session."""
    try:
        libvirt_env.ensure_libvirtd()
    except libvirt_env.Unavailable as exc:
        pytest.skip(str(exc))
    with libvirt_env.host_lock():
        libvirt_env.cleanup_test_domains()
        yield libvirt_env
        libvirt_env.cleanup_test_domains()
