"""The library's settings builder (``ft_fit_config`` of ``include/factortopy.h``): every option
class of this package (:class:`~factortopy.FitOptions`, :class:`~factortopy.MonitorOptions`,
:class:`~factortopy.synth.SynthOptions`) maps its fields onto one setter each, so each value is
checked where the library checks it, once."""

from __future__ import annotations

import ctypes
import json
from ctypes import c_bool, c_char_p, c_double, c_size_t, c_void_p

from ._lib import CONFIG_SETTERS, c_int, call, take_string
from .data import _Handle, _new_handle


class Config(_Handle):
    """One ``ft_fit_config``: a preset's settings for ``n_images`` probe images (0: the schedule
    follows the data each call receives), changed by :meth:`set`.

    Parameters
    ----------
    preset : str
        ``"auto"``, ``"design"`` or ``"fast"``.
    n_images : int
        Number of probe images the preset's schedule is made for (0: each call's data).

    Raises
    ------
    InvalidArgumentError
        For an unknown preset.
    """

    _free_name = "ft_fit_config_free"

    def __init__(self, preset: str = "auto", n_images: int = 0):
        super().__init__(_new_handle("ft_fit_config_new", preset.encode(), c_int(c_size_t, n_images, "n_images")))

    def set(self, name: str, value, what: str | None = None) -> "Config":
        """Changes one setting through its setter, ``ft_fit_config_set_<name>``.

        Parameters
        ----------
        name : str
            A key of ``CONFIG_SETTERS``.
        value
            The value; strings for the named settings, ``None`` where the header allows NULL.
        what : str, optional
            The caller's name of the setting, for range errors found before the call.

        Returns
        -------
        Config
            ``self``, for chaining.

        Raises
        ------
        InvalidArgumentError
            For a value the library refuses (the config is unchanged).
        TypeError
            For an unknown setting.
        """
        ctype = CONFIG_SETTERS.get(name)
        if ctype is None:
            raise TypeError(f"unknown setting {name!r}; expected one of {', '.join(CONFIG_SETTERS)}")
        if ctype is c_char_p:
            arg = None if value is None else str(value).encode()
        elif ctype is c_bool:
            arg = bool(value)
        elif ctype is c_double:
            arg = float(value)
        else:
            arg = c_int(ctype, value, what or name)
        call(f"ft_fit_config_set_{name}", self.handle, arg)
        return self

    def settings(self) -> dict:
        """Every setting by name (``ft_fit_config_json``), with ``preset``, ``n_images`` and
        ``set`` (the settings changed by :meth:`set`).

        Returns
        -------
        dict
        """
        out = c_void_p()
        call("ft_fit_config_json", self.handle, ctypes.byref(out))
        return json.loads(take_string(out))


__all__ = ["Config"]
