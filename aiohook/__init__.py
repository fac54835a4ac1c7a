"""aiohook: decide QEMU disk io= modes for libvirt domains and guard the host AIO budget."""

__version__ = "0.1.0"
