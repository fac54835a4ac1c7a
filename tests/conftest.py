import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import libvirt_env  # noqa: E402

# Which stacks the libvirt tests run on: AIOHOOK_STACKS=host,modern (the default: both).
SELECTED = [s for s in os.environ.get("AIOHOOK_STACKS", ",".join(libvirt_env.STACKS)).split(",")
            if s in libvirt_env.STACKS]


@pytest.fixture(scope="session")
def _host_session():
    """The host lock for the whole session, the /dev/kvm ACL while it lasts, and the
    chroot stack stopped and unmounted at the end (the host's libvirtd stays up)."""
    if os.geteuid() != 0:
        pytest.skip("not root: libvirtd tests need root")
    with libvirt_env.host_lock(), libvirt_env.kvm_acl():
        started: dict[str, libvirt_env.Stack] = {}
        try:
            yield started
        finally:
            for st in started.values():
                st.cleanup_test_domains()
                st.stop()


def _start(session: dict, name: str) -> libvirt_env.Stack:
    st = libvirt_env.stack(name)
    if name not in session:
        try:
            st.ensure_running()
        except libvirt_env.Unavailable as exc:
            pytest.skip(str(exc))
        st.cleanup_test_domains()
        session[name] = st
    return st


@pytest.fixture(scope="session")
def libvirt_host(_host_session):
    """The host's own libvirtd (libvirt 9.0 / QEMU 7.2 on Debian 12)."""
    return _start(_host_session, "host")


@pytest.fixture(scope="module", params=SELECTED)
def stack(request, _host_session):
    """Each libvirt stack in turn: the host's, then the chroot's libvirt 11 / QEMU 10."""
    st = _start(_host_session, request.param)
    yield st
    st.cleanup_test_domains()
