import genesis_platform


def test_all_names_exist() -> None:
    missing = [name for name in genesis_platform.__all__ if not hasattr(genesis_platform, name)]
    assert missing == []


def test_public_surface_is_complete() -> None:
    exported = {
        name
        for name in dir(genesis_platform)  # lazily imported names too
        if not name.startswith("_")
        and not isinstance(getattr(genesis_platform, name), type(genesis_platform))
    }
    assert exported == set(genesis_platform.__all__) - {"__version__"}
