"""Node and fleet ids: short ASCII names, checked the same way everywhere."""

from roost.common.limits import MAX_ID_LEN

_ALLOWED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."


def is_valid_id(name):
    """True for 1..32 characters of letters, digits, '-', '_' or '.', the first a letter or
    a digit (ids name directories and command-line arguments: '..' or '-x' must not)."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_ID_LEN or name[0] in "-_.":
        return False
    for ch in name:
        if ch not in _ALLOWED:
            return False
    return True


def check_id(name, what="node id"):
    """Return name, or raise ValueError with one sentence saying what is wrong."""
    if not is_valid_id(name):
        raise ValueError(
            "%s %r must be 1 to %d letters, digits, '-', '_' or '.', starting with a letter "
            "or a digit" % (what, name, MAX_ID_LEN)
        )
    return name


def node_name(i, width=2):
    """Conventional node names: node_name(3) == 'n03'."""
    s = str(i)
    while len(s) < width:
        s = "0" + s
    return "n" + s
