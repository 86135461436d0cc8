"""The CUDA build option (see //:cuda)."""

def cuda_only():
    """target_compatible_with for targets that need the CUDA toolkit: skipped without --config=cuda."""
    return select({
        "//:cuda": [],
        "//conditions:default": ["//:cuda_toolkit_required"],
    })
