"""Objects named by a dotted path in a config node's ``_target_`` (Hydra's convention).

``strategy._target_: my_mtl.Mine``, ``model._target_: my_mtl.build_model`` and
``dataset._target_: my_mtl.load_data`` bring a user's own strategy, model and data into a run
without a fork (README: "Bring your own method, model and data").
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

IDENTITY_KEYS = ("name", "_target_")


def locate(path: str, key: str) -> Any:
    """The object at ``package.module.Name``; one clear error naming ``key`` when it cannot be found."""
    if not isinstance(path, str) or "." not in path.strip("."):
        raise ValueError(f"{key}={path!r}: give a dotted path to an importable object, e.g. my_mtl.MyWeighting")
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        missing = getattr(err, "name", None)
        if missing and missing != module_name and not module_name.startswith(missing + "."):
            # the module was found, but one of its own imports was not
            raise ValueError(f"{key}={path}: module {module_name!r} was found but its own import of {missing!r} "
                             f"failed ({err}); install {missing!r} where mtl-bench runs") from None
        raise ValueError(f"{key}={path}: cannot import module {module_name!r} ({err}); put the folder that holds "
                         f"it on PYTHONPATH (or pip install it) before running") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"{key}={path}: module {module_name!r} has no {attribute!r}") from None


def node_params(node: Mapping, drop: tuple[str, ...] = ()) -> dict:
    """A config node as a plain dict without its identity keys (``name``, ``_target_``) and ``drop``."""
    from omegaconf import DictConfig, OmegaConf

    params = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    for key in (*IDENTITY_KEYS, *drop):
        params.pop(key, None)
    return params


def call_builder(node: Mapping, group: str, drop: tuple[str, ...] = (), **inputs) -> Any:
    """Call the function named by ``node._target_`` with ``inputs`` and the node's other keys (but
    ``drop``): a call its signature refuses is one line naming the keys and the function."""
    builder = locate(node["_target_"], f"{group}._target_")
    if not callable(builder):
        raise ValueError(f"{group}._target_={node['_target_']} is not callable")
    arguments = {**inputs, **node_params(node, drop)}
    try:
        inspect.signature(builder).bind(**arguments)
    except TypeError as err:
        raise ValueError(f"{group}._target_={node['_target_']} cannot be called with ({', '.join(arguments)}): {err}; "
                         f"it is called with {', '.join(inputs)} and the other keys of the {group} config") from None
    except ValueError:  # no signature to check (a builtin): let the call say what is wrong
        pass
    return builder(**arguments)
