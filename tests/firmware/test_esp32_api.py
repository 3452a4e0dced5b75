"""Board-side code and the virtual board's stand-ins, checked against the real ESP32 port API.

No board is attached to CI: board-side code only ever runs on MicroPython's unix port, with
our stand-in ``machine`` and ``network`` (roost/firmware/shims/). A name or a call signature
the ESP32 port does not have would go unnoticed until a teacher flashes a real board. The
port's API is read from the type stubs of ``micropython-esp32-stubs`` (generated from the
MicroPython 1.29 ESP32 firmware and docs), parsed with ``ast``: nothing is imported or run.

1. Board-side code (``build.board_sources()``, boot.py, main.py): every attribute used on
   ``machine``, ``network``, ``dht``, ``esp32``, ``esp`` exists in the port's module; every
   call of a port class or function, and every method call on an instance made from one in
   the same function or class, binds to the stub signature (any ``@overload``).
2. The stand-ins: every public name exists in the port's module (same constant values), and
   no stand-in signature accepts calls the port refuses by position, or refuses a keyword the
   board code passes.

``camera`` is left out: it is not part of stock MicroPython (ESP32-CAM firmwares add their
own, with differing APIs), so no stub describes it.
"""

import ast
import copy
import difflib
import functools
import importlib.metadata

import pytest

from roost.firmware import build

ROOT = build.ROOT
STUB_PACKAGE = "micropython-esp32-stubs"
PORT_MODULES = ("machine", "network", "dht", "esp32", "esp")
BOOT_FILES = ("roost/firmware/esp32/boot.py", "roost/firmware/esp32/main.py")
STAND_INS = {
    "machine": "roost/firmware/shims/machine.py",
    "network": "roost/firmware/shims/network.py",
}

# Port objects that reach a function as a parameter (the checker follows an instance only
# within the function or class that made it): (file, function, parameter) -> its class.
PARAM_TYPES = {
    # boardlib.wifi_start() makes the WLAN that boot() and main() hand to these two
    ("roost/firmware/boardlib.py", "wifi_wait", "wlan"): "network.WLAN",
    ("roost/firmware/boardlib.py", "wifi_connect", "wlan"): "network.WLAN",
    # boards._esp32() passes the bus from esp32.default_i2c(), a machine.I2C
    ("roost/hardware/esp32.py", "BME280.__init__", "i2c"): "machine.I2C",
}

# Board-code findings that are safe, by key ("<file> <module.name>"), each with its reason.
# Keep it minimal: an access the port lacks is allowed only behind hasattr/getattr-with-default.
BOARD_ALLOWED = {}

# Stand-in findings accepted for now, by key ("<module.name> <rule>"), each with its reason.
STAND_IN_ALLOWED = {
    "machine.RESET_REQUEST missing": (
        "the virtual board's channel to its agent (shims/agent.py), not part of the port; "
        "board code never uses it (the board-code test would report machine.RESET_REQUEST)"
    ),
    "machine.I2C required": (
        "the port's three overloads (an id; scl and sda; or both) are one Python signature "
        "with defaults in the stand-in, whose body refuses I2C() as the port does"
    ),
}


# --- the port's API, from the stubs ---------------------------------------------------------


@functools.cache
def load_stubs():
    """{module: {name: [stub nodes defining it]}} for the port modules, from the installed
    stub package (the test fails, not skips, without it: a skipped test can never fail)."""
    try:
        dist = importlib.metadata.distribution(STUB_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is None:
        pytest.fail("%s is not installed: pip install -e '.[dev]'" % STUB_PACKAGE, pytrace=False)
    stubs = {}
    for mod in PORT_MODULES:
        path = dist.locate_file(mod + ".pyi")
        if not path.exists():
            pytest.fail(
                "%s has no %s.pyi: pip install -e '.[dev]'" % (STUB_PACKAGE, mod), pytrace=False
            )
        stubs[mod] = members(ast.parse(path.read_text(encoding="utf-8")).body)
    return stubs


def members(body):
    """{name: [statements defining it]} for a module or class body (overloads are several
    defs of one name; a class defined twice in a stub keeps both)."""
    out = {}
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            names = [stmt.name]
        elif isinstance(stmt, ast.Assign):
            names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names = [stmt.target.id]
        else:
            names = []
        for name in names:
            out.setdefault(name, []).append(stmt)
    return out


def is_class(stub, name):
    return any(isinstance(n, ast.ClassDef) for n in stub.get(name, ()))


def class_members(stub, name):
    """Members of a stub class, with those inherited from bases in the same stub (a method
    the class defines replaces the base's overloads)."""
    out = {}
    classes = [n for n in stub.get(name, ()) if isinstance(n, ast.ClassDef)]
    for cls in classes:
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id != name:
                out.update(class_members(stub, base.id))
    own = {}
    for cls in classes:
        for member, nodes in members(cls.body).items():
            own.setdefault(member, []).extend(nodes)
    out.update(own)
    return out


def functions(nodes):
    return [n for n in nodes if isinstance(n, ast.FunctionDef)]


def is_static(fn):
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)


def literal(nodes):
    """The constant a stub or stand-in assigns to a name, or None when it gives none."""
    for n in nodes:
        value = n.value if isinstance(n, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Constant) and value.value is not Ellipsis:
            return value.value
    return None


def port_signatures(label, fns, drop_first):
    """How the port's overloads read, e.g. 'machine.WDT(*, id=0, timeout=5000)' (overloads
    that differ only in annotations, like WLAN.config's Literal params, read once)."""
    sigs = ["%s(%s)" % (label, signature(fn, drop_first)) for fn in fns]
    return " | ".join(sorted(set(sigs), key=sigs.index))


def signature(fn, drop_first):
    """A def's parameters without annotations (and without self when drop_first)."""
    args = copy.deepcopy(fn.args)
    for p in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
        if p is not None:
            p.annotation = None
    if drop_first:
        if args.posonlyargs:
            args.posonlyargs.pop(0)
        elif args.args:
            args.args.pop(0)
    return ast.unparse(args)


def positional_names(fn, drop_first):
    names = [p.arg for p in fn.args.posonlyargs + fn.args.args]
    return names[1:] if drop_first else names


def required_count(fn, drop_first):
    """How many arguments a call must give at least."""
    n = len(positional_names(fn, drop_first)) - len(fn.args.defaults)
    return n + sum(1 for d in fn.args.kw_defaults if d is None)


def most_positional(fns, drop_first):
    """The most positional arguments any of the overloads takes (None: no limit)."""
    if any(fn.args.vararg is not None for fn in fns):
        return None
    return max(len(positional_names(fn, drop_first)) for fn in fns)


def keyword_ok(fn, name):
    a = fn.args
    return a.kwarg is not None or name in [p.arg for p in a.args + a.kwonlyargs]


def bind_error(fn, n_positional, keywords, drop_first):
    """Why a call with n_positional arguments and these keyword names does not bind to fn
    (a stub def), or None when it does. Python's own rules: /, *, defaults, *args, **kw."""
    a = fn.args
    positional = positional_names(fn, drop_first)
    posonly = {p.arg for p in a.posonlyargs}
    if n_positional > len(positional) and a.vararg is None:
        return "it passes %d positional argument(s), the port takes at most %d" % (
            n_positional,
            len(positional),
        )
    given = set(positional[:n_positional])
    kwonly = [p.arg for p in a.kwonlyargs]
    for k in keywords:
        if k in posonly:
            if a.kwarg is None:
                return "%s cannot be passed by keyword (it is positional-only)" % k
        elif k in positional or k in kwonly:
            if k in given:
                return "%s is given twice" % k
            given.add(k)
        elif a.kwarg is None:
            return "the port has no keyword argument %s" % k
    required = positional[: len(positional) - len(a.defaults)]  # defaults fill the end
    required += [p for p, d in zip(kwonly, a.kw_defaults) if d is None]
    missing = [p for p in required if p not in given]
    if missing:
        return "it does not give %s" % ", ".join(missing)
    return None


# --- board-side code ------------------------------------------------------------------------


def board_files():
    """Board-side modules (paths relative to the repo): what a board image holds as source."""
    return build.board_sources() + list(BOOT_FILES)


def scope_nodes(body):
    """Every node of one scope in source order, not descending into nested defs or classes
    (which are scopes of their own)."""
    out = []
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        out.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return out


def resolve(expr, env, stubs):
    """What an expression holds, as far as the port goes: ("module", m), ("member", m, name)
    for a port class or function, ("instance", m, cls), or None (not followed)."""
    if isinstance(expr, ast.Name):
        return env.get(expr.id)
    if isinstance(expr, ast.Attribute):
        if isinstance(expr.value, ast.Name) and expr.value.id == "self":
            return env.get("self." + expr.attr)
        base = resolve(expr.value, env, stubs)
        return ("member", base[1], expr.attr) if base and base[0] == "module" else None
    if isinstance(expr, ast.Call):
        name = getattr_name(expr)
        if name is not None:  # getattr(machine, "Pin", None) is machine.Pin
            base = resolve(expr.args[0], env, stubs)
            return ("member", base[1], name) if base and base[0] == "module" else None
        f = resolve(expr.func, env, stubs)
        if f and f[0] == "member" and is_class(stubs[f[1]], f[2]):
            return ("instance", f[1], f[2])
    return None


def getattr_name(call, funcs=("getattr",)):
    """The attribute name of getattr(obj, "name"[, default]) (or hasattr), else None."""
    if (
        isinstance(call.func, ast.Name)
        and call.func.id in funcs
        and len(call.args) >= 2
        and isinstance(call.args[1], ast.Constant)
        and isinstance(call.args[1].value, str)
    ):
        return call.args[1].value
    return None


def bind_names(nodes, env, stubs):
    """Apply a scope's imports and assignments to env, in source order; the result holds for
    the whole scope (flow-insensitive). A name assigned two different port things is not
    followed; assigning None keeps a name (``machine = None`` is the fallback of
    ``try: import machine``); assigning anything else we do not follow shadows it."""
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                local = a.asname or a.name.split(".")[0]
                if a.name in PORT_MODULES:
                    env[local] = ("module", a.name)
                else:
                    env.pop(local, None)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if node.module in PORT_MODULES and node.level == 0:
                    env[a.asname or a.name] = ("member", node.module, a.name)
                else:  # e.g. from roost.hardware import esp32: our driver, not the port's
                    env.pop(a.asname or a.name, None)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            env.pop(node.name, None)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                assign(target, node.value, env, stubs)


def assign(target, value, env, stubs):
    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
        if len(target.elts) == len(value.elts):
            for t, v in zip(target.elts, value.elts):
                assign(t, v, env, stubs)
        return
    if isinstance(target, ast.Name):
        key = target.id
    elif (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    ):
        key = "self." + target.attr
    else:
        return
    ref = resolve(value, env, stubs)
    if ref is None:
        if not (isinstance(value, ast.Constant) and value.value is None):
            env.pop(key, None)
    elif key in env and env[key] != ref:
        env[key] = None  # two different port things: not followed
    else:
        env[key] = ref


def check_board_source(text, path, stubs, param_types=None, keywords=None):
    """Findings [(key, message)] for the port API one board-side file uses. When given,
    ``keywords`` collects {callable label: {keyword: "file:line"}} of the calls it binds."""
    run = {
        "path": path,
        "stubs": stubs,
        "params": param_types or {},
        "keywords": {} if keywords is None else keywords,
        "findings": [],
    }
    env = {m: ("module", m) for m in PORT_MODULES}  # a bare machine.X means the port's
    check_scope(scope_nodes(ast.parse(text).body), env, "", None, run)
    return run["findings"]


def enter_scope(nodes, env, qual, args, run):
    """The env inside a scope: parameters named like a port module are that module (tests
    pass stand-ins in), declared parameter types (PARAM_TYPES), then the scope's bindings."""
    env = dict(env)
    params = [] if args is None else args.posonlyargs + args.args + args.kwonlyargs
    for p in params:
        if p.arg in PORT_MODULES:
            env[p.arg] = ("module", p.arg)
        else:
            env.pop(p.arg, None)
        declared = run["params"].get((run["path"], qual, p.arg))
        if declared is not None:
            env[p.arg] = ("instance",) + tuple(declared.split("."))
    bind_names(nodes, env, run["stubs"])
    return env


def check_scope(nodes, env, qual, args, run):
    """Check one scope (its nodes from scope_nodes), then the functions and classes in it."""
    env = enter_scope(nodes, env, qual, args, run)
    for node in nodes:
        check_node(node, env, run)
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            check_scope(scope_nodes(node.body), env, dotted(qual, node.name), node.args, run)
        elif isinstance(node, ast.ClassDef):
            check_class(node, env, dotted(qual, node.name), run)


def dotted(qual, name):
    return qual + "." + name if qual else name


def check_class(cls, env, qual, run):
    """A class's methods share what they store on self (e.g. self._wdt = machine.WDT(...)
    in __init__, self._wdt.feed() in feed), so collect that first, then check each."""
    methods = {
        n: scope_nodes(n.body)
        for n in cls.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    attrs = {}
    for m, nodes in methods.items():
        inside = enter_scope(nodes, env, dotted(qual, m.name), m.args, run)
        for key, ref in inside.items():
            if key.startswith("self."):
                attrs[key] = ref if attrs.get(key, ref) == ref else None
    class_env = dict(env, **attrs)
    for node in cls.body:
        if node in methods:
            check_scope(methods[node], class_env, dotted(qual, node.name), node.args, run)
        else:
            check_scope(scope_nodes([node]), env, qual, None, run)


def check_node(node, env, run):
    stubs = run["stubs"]
    if isinstance(node, ast.Attribute):
        if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            check_attribute(resolve(node.value, env, stubs), node.attr, node, run)
    elif isinstance(node, ast.ImportFrom) and node.module in PORT_MODULES:
        for a in node.names:
            check_attribute(("module", node.module), a.name, node, run)
    elif isinstance(node, ast.Call):
        name = getattr_name(node, ("getattr", "hasattr"))
        if name is not None:
            check_attribute(resolve(node.args[0], env, stubs), name, node, run)
        check_call(node, env, run)


def check_attribute(base, attr, node, run):
    """Report attr when the port's module or class (base) does not have it."""
    if base is None or attr.startswith("__"):
        return
    stub = run["stubs"][base[1]]
    if base[0] == "module":
        label, known = base[1], stub
    elif is_class(stub, base[2]):
        label, known = "%s.%s" % (base[1], base[2]), class_members(stub, base[2])
    else:
        return  # a port function's attributes, or a name already reported as missing
    if attr in known:
        return
    key = "%s %s.%s" % (run["path"], label, attr)
    close = difflib.get_close_matches(attr, sorted(known), n=1)
    hint = "; the port has %s" % close[0] if close else ""
    report(
        run,
        key,
        node,
        "%s uses %s.%s, which the ESP32 port does not have (%s.pyi)%s"
        % (source(node), label, attr, base[1], hint),
    )


def check_call(node, env, run):
    """Bind a call of a port class, function or instance method to the stub's overloads."""
    stubs = run["stubs"]
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return  # *args/**kwargs at the call: cannot be bound statically
    f = resolve(node.func, env, stubs)
    if f and f[0] == "member" and is_class(stubs[f[1]], f[2]):
        label = "%s.%s" % (f[1], f[2])
        fns = functions(class_members(stubs[f[1]], f[2]).get("__init__", ()))
        drop_first = True
    elif f and f[0] == "member":
        label = "%s.%s" % (f[1], f[2])
        fns = functions(stubs[f[1]].get(f[2], ()))
        drop_first = False
    elif isinstance(node.func, ast.Attribute):
        base = resolve(node.func.value, env, stubs)
        if not base or base[0] != "instance" or not is_class(stubs[base[1]], base[2]):
            return
        label = "%s.%s.%s" % (base[1], base[2], node.func.attr)
        fns = functions(class_members(stubs[base[1]], base[2]).get(node.func.attr, ()))
        drop_first = not (fns and is_static(fns[0]))
    else:
        return
    if not fns:
        return  # no signature in the stub (or a missing name, reported on its own)
    keywords = [k.arg for k in node.keywords]
    for k in keywords:
        run["keywords"].setdefault(label, {}).setdefault(k, "%s:%d" % (run["path"], node.lineno))
    errors = [bind_error(fn, len(node.args), keywords, drop_first) for fn in fns]
    if all(errors):
        if len(fns) == 1:
            why = "does not fit the ESP32 port's %s: %s" % (
                port_signatures(label, fns, drop_first),
                errors[0],
            )
        else:
            each = [
                "%s (%s)" % (port_signatures(label, [fn], drop_first), e)
                for fn, e in zip(fns, errors)
            ]
            why = "fits none of the ESP32 port's signatures: " + "; ".join(
                sorted(set(each), key=each.index)
            )
        report(run, "%s %s" % (run["path"], label), node, "%s %s" % (source(node), why))


def source(node):
    text = ast.unparse(node)
    return text if len(text) <= 90 else text[:87] + "..."


def report(run, key, node, sentence):
    run["findings"].append((key, "%s:%d: %s." % (run["path"], node.lineno, sentence)))


def function_params(tree):
    """{qualified function name: [parameter names]} of one module, e.g. 'BME280.__init__'."""
    out = {}
    stack = [("", n) for n in tree.body]
    while stack:
        prefix, node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qual = prefix + node.name
            if not isinstance(node, ast.ClassDef):
                a = node.args
                out[qual] = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
            stack.extend((qual + ".", n) for n in node.body)
    return out


# --- the stand-ins --------------------------------------------------------------------------


def check_stand_in(text, path, mod, stubs, keywords):
    """Findings [(key, message)] for one stand-in module against the port's module:
    ``keywords`` is {callable label: {keyword: "file:line"}} the board code passes."""
    run = {"path": path, "stubs": stubs, "keywords": keywords, "findings": []}
    stub = stubs[mod]
    tree = ast.parse(text)
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for name, nodes in members(tree.body).items():
        if name.startswith("_"):
            continue
        label = "%s.%s" % (mod, name)
        node, ours = nodes[0], stands_for(nodes[0], defs)
        if name not in stub:
            report(
                run,
                label + " missing",
                node,
                "the stand-in defines %s, which the ESP32 port does not have (%s.pyi): board "
                "code using it would run on the virtual board and fail on a board" % (label, mod),
            )
        elif kind(ours) != stub_kind(stub, name):
            report(
                run,
                label + " kind",
                node,
                "the stand-in's %s is a %s, the ESP32 port's is a %s"
                % (label, kind(ours), stub_kind(stub, name)),
            )
        elif isinstance(ours, ast.ClassDef):
            compare_class(ours, mod, name, run)
        elif isinstance(ours, ast.FunctionDef):
            compare_callable(ours, functions(stub[name]), label, node, False, run)
        else:
            compare_value(nodes, stub[name], label, node, run)
    return run["findings"]


def stands_for(node, defs):
    """The def or class a stand-in name is (``SoftI2C = I2C``: the class I2C), else node."""
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
        return defs.get(node.value.id, node)
    return node


def kind(node):
    if isinstance(node, ast.ClassDef):
        return "class"
    return "function" if isinstance(node, ast.FunctionDef) else "value"


def stub_kind(stub, name):
    if is_class(stub, name):
        return "class"
    return "function" if functions(stub[name]) else "value"


def compare_class(cls, mod, name, run):
    """A stand-in class against the port's: its public members (and __init__, __call__)."""
    theirs = class_members(run["stubs"][mod], name)
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    for member, nodes in members(cls.body).items():
        if member.startswith("_") and member not in ("__init__", "__call__"):
            continue
        label = "%s.%s" % (mod, name)  # the constructor reads machine.WDT(...)
        if member != "__init__":
            label += "." + member
        node, ours = nodes[0], stands_for(nodes[0], methods)
        if member not in theirs:
            if member != "__init__":  # a stub class without __init__: nothing to compare
                report(
                    run,
                    label + " missing",
                    node,
                    "the stand-in defines %s, which the ESP32 port does not have (%s.pyi)"
                    % (label, mod),
                )
        elif isinstance(ours, ast.FunctionDef):
            fns = functions(theirs[member])
            if fns:
                compare_callable(ours, fns, label, node, not is_static(ours), run)
        else:
            compare_value(nodes, theirs[member], label, node, run)


def compare_callable(ours, theirs, label, node, drop_first, run):
    """A stand-in def against the port's overloads: it must not take any arguments
    (*args/**kwargs) where the port does not, take by position what the port takes only by
    keyword, or need fewer arguments; and it must take every keyword the board code passes."""
    ours_sig = "%s(%s)" % (label, signature(ours, drop_first))
    sigs = port_signatures(label, theirs, drop_first)
    loose = []
    if ours.args.vararg is not None and all(fn.args.vararg is None for fn in theirs):
        loose.append("*args")
    if ours.args.kwarg is not None and all(fn.args.kwarg is None for fn in theirs):
        loose.append("**kwargs")
    if loose:
        report(
            run,
            label + " catch-all",
            node,
            "the stand-in %s takes %s, so the virtual board accepts calls the ESP32 port's %s "
            "refuses" % (ours_sig, " and ".join(loose), sigs),
        )
    if ours.args.vararg is None:  # else the catch-all says it all
        most = most_positional(theirs, drop_first)
        extra = [] if most is None else positional_names(ours, drop_first)[most:]
        if extra:
            report(
                run,
                label + " positional",
                node,
                "the stand-in %s takes %s by position, but the ESP32 port's %s takes at most "
                "%d positional argument(s): a call passing %s by position runs on the virtual "
                "board and fails on a board"
                % (ours_sig, ", ".join(extra), sigs, most, ", ".join(extra)),
            )
        least = min(required_count(fn, drop_first) for fn in theirs)
        if required_count(ours, drop_first) < least:
            report(
                run,
                label + " required",
                node,
                "the stand-in %s can be called with %d argument(s), the ESP32 port's %s needs "
                "at least %d" % (ours_sig, required_count(ours, drop_first), sigs, least),
            )
    for kw, where in sorted(run["keywords"].get(label, {}).items()):
        if not keyword_ok(ours, kw):
            report(
                run,
                "%s keyword %s" % (label, kw),
                node,
                "board code passes %s= to %s (%s), which the stand-in %s does not accept"
                % (kw, label, where, ours_sig),
            )


def compare_value(ours_nodes, theirs_nodes, label, node, run):
    """A stand-in constant must have the port's value (where the stub gives one)."""
    ours, theirs = literal(ours_nodes), literal(theirs_nodes)
    if ours is not None and theirs is not None and ours != theirs:
        report(
            run,
            label + " value",
            node,
            "the stand-in's %s is %r, the ESP32 port's is %r" % (label, ours, theirs),
        )


# --- the tests ------------------------------------------------------------------------------


def assert_only_allowed(findings, allowed):
    """Every finding is allowed, and every allow-list entry still matches something."""
    unexpected = [message for key, message in findings if key not in allowed]
    assert not unexpected, "\n" + "\n".join(unexpected)
    stale = sorted(set(allowed) - {key for key, _ in findings})
    assert not stale, "allow-list entries that match nothing any more (remove them): " + (
        ", ".join(stale)
    )


@functools.cache
def board_report():
    """(findings, keywords) of check_board_source over every board-side file (cached: two
    tests read it)."""
    stubs = load_stubs()
    findings, keywords = [], {}
    for rel in board_files():
        text = (ROOT / rel).read_text(encoding="utf-8")
        findings += check_board_source(text, rel, stubs, PARAM_TYPES, keywords)
    return findings, keywords


def test_board_code_uses_only_the_esp32_port_api():
    findings, _ = board_report()
    assert_only_allowed(findings, BOARD_ALLOWED)


def test_declared_parameter_types_name_real_parameters():
    """PARAM_TYPES must not rot: each entry names a parameter that exists, in a board file."""
    for (rel, qual, param), cls in PARAM_TYPES.items():
        assert rel in board_files(), "PARAM_TYPES names %s, not a board-side file" % rel
        params = function_params(ast.parse((ROOT / rel).read_text(encoding="utf-8")))
        assert param in params.get(qual, ()), (
            "PARAM_TYPES says %s:%s takes %s (a %s), but it has no such parameter: update "
            "PARAM_TYPES in this file" % (rel, qual, param, cls)
        )


def test_stand_ins_are_no_looser_than_the_esp32_port():
    _, keywords = board_report()
    findings = []
    for mod, rel in sorted(STAND_INS.items()):
        text = (ROOT / rel).read_text(encoding="utf-8")
        findings += check_stand_in(text, rel, mod, load_stubs(), keywords)
    assert_only_allowed(findings, STAND_IN_ALLOWED)


BAD_BOARD_CODE = """\
import machine
import network

def start(ssid):
    machine.WDT(0, 5000)
    machine.Pin(2, machine.Pin.OUT, frob=1)
    network.WLAN().conect()
    wlan = network.WLAN(network.STA_IF)
    wlan.connect(ssid, key="secret")
    machine.Frob()
    machine.I2C(0, scl=machine.Pin(22))

def held(pin_no, machine=None):
    pin_cls = getattr(machine, "Pin", None)
    return pin_cls(pin_no, pin_cls.INPUT).value(1, 2)

def sensors(i2c):
    from roost.hardware import esp32
    return esp32.BME280(i2c)
"""


def test_the_board_checker_reports_known_bad_calls():
    """A checker that finds nothing on our code must be able to find something."""
    findings = check_board_source(BAD_BOARD_CODE, "bad.py", load_stubs())
    messages = "\n".join(message for _, message in findings)
    expected = [
        ("bad.py:5: machine.WDT(0, 5000)", "machine.WDT(*, id=0, timeout=5000)"),
        ("bad.py:6: machine.Pin(2, machine.Pin.OUT, frob=1)", "no keyword argument frob"),
        ("bad.py:7: network.WLAN().conect", "(network.pyi); the port has connect."),
        ("bad.py:9: wlan.connect(ssid, key='secret')", "password=None, /, *, bssid=None"),
        ("bad.py:10: machine.Frob", "does not have (machine.pyi)"),
        ("bad.py:11: machine.I2C(0, scl=machine.Pin(22))", "it does not give sda"),
        ("bad.py:15: pin_cls.INPUT uses machine.Pin.INPUT", "does not have (machine.pyi)"),
        ("bad.py:15: pin_cls(pin_no, pin_cls.INPUT).value(1, 2)", "at most 1"),
    ]
    for where, what in expected:
        lines = [line for line in messages.splitlines() if line.startswith(where)]
        assert lines and what in lines[0], "expected %r ... %r in:\n%s" % (where, what, messages)
    # our own driver module named esp32 (line 19) is not the port's esp32
    assert len(findings) == len(expected), messages


BAD_STAND_IN = """\
class WDT:
    def __init__(self, id=0, timeout=5000):
        pass

class ADC:
    def __init__(self, pin):
        pass

class I2C:
    def __init__(self, *args, **kwargs):
        pass

class Pin:
    IN = 4

def frobnicate():
    pass
"""


def test_the_stand_in_checker_reports_loose_signatures():
    keywords = {"machine.ADC": {"atten": "board.py:9"}}
    findings = check_stand_in(BAD_STAND_IN, "shim.py", "machine", load_stubs(), keywords)
    keys = sorted(key for key, _ in findings)
    assert keys == [
        "machine.ADC keyword atten",
        "machine.I2C catch-all",
        "machine.Pin.IN value",
        "machine.WDT positional",
        "machine.frobnicate missing",
    ], "\n".join(message for _, message in findings)
    wdt = [message for key, message in findings if key == "machine.WDT positional"][0]
    assert wdt.startswith("shim.py:2: the stand-in machine.WDT(id=0, timeout=5000) takes id,")
    assert "machine.WDT(*, id=0, timeout=5000)" in wdt
