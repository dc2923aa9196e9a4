"""The allowed range of every numeric parameter of :mod:`lenssearch.config`, checked where the config is loaded.

One table, :data:`RANGES`: section class name -> field name -> range. A range is written as an interval,
``"[1, inf)"``, ``"(0, 1]"``, ``"[-90, 90]"``, or ``"finite"`` (any finite number); a tuple of ranges applies one
per item of a fixed-length tuple (``center_radec``). A range applies to a number, and to each number of a list or
mapping of numbers; ``None`` (an optional parameter left null) is not checked. :data:`ORDERED` lists the pairs of
fields (or the two items of a ``*_range`` field) that must not decrease.

``tests/test_config.py`` checks that every numeric field of every section has a range here, so a new parameter
needs one line. Kept out of ``config.py`` so that the sections and their ranges are edited independently.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

# --------------------------------------------------------------------------------------------------- the table
POSITIVE = "(0, inf)"
NON_NEGATIVE = "[0, inf)"
AT_LEAST_ONE = "[1, inf)"
FRACTION = "[0, 1]"
PROBABILITY = "[0, 1]"
REDSHIFT = "(0, 20]"
MAGNITUDE = "[-40, 50]"  # AB magnitudes and their splits
ANY = "finite"

RANGES: dict[str, dict[str, Any]] = {
    "ModelingNetworkConfig": {
        "input_pixels": AT_LEAST_ONE, "binning": AT_LEAST_ONE, "normalisation_softening": POSITIVE,
        "stem_stride": "[1, 4]", "filters": AT_LEAST_ONE, "blocks_per_stage": AT_LEAST_ONE,
        "dense_units": AT_LEAST_ONE, "dropout": "[0, 1)", "leaky_relu_slope": "[0, 1]", "log_sigma_range": "[-20, 20]",
    },
    "ModelingRejectConfig": {"margin": "[1, inf)", "trend_degree": "[0, 3]",
                             "cross_check_folds": "[2, inf)"},
    "ModelingConfig": {
        "test_fold": NON_NEGATIVE, "batch_size": AT_LEAST_ONE, "learning_rate": POSITIVE, "max_epochs": AT_LEAST_ONE,
        "early_stopping_patience": AT_LEAST_ONE, "min_learning_rate": POSITIVE, "theta_e_bins": NON_NEGATIVE, "snr_bins": "[0, inf]",
        "theta_e_min_arcsec": NON_NEGATIVE, "shift_arcsec": NON_NEGATIVE,
    },
    "BaseConfig": {"seed": NON_NEGATIVE, "pixel_scale_arcsec": "(0, 10]"},
    "CosmologyConfig": {"H0": "(0, 500]", "Om0": "[0, 1]"},
    "CriticalLinesConfig": {
        "theta_e_min_arcsec": NON_NEGATIVE, "theta_e_max_arcsec": POSITIVE, "resolution_arcsec": POSITIVE,
        "search_radius_arcsec": POSITIVE, "source_redshifts": REDSHIFT,
    },
    "LensToolFieldConfig": {"map_size_arcsec": POSITIVE, "map_pixel_arcsec": POSITIVE, "image_size_arcsec": POSITIVE},
    "HaloConfig": {
        "sigma_kms": POSITIVE, "core_radius_kpc": NON_NEGATIVE, "cut_radius_kpc": POSITIVE, "emass": "[0, 1)",
        "angle_deg": ANY, "x_arcsec": ANY, "y_arcsec": ANY,
    },
    "SyntheticFieldEntry": {
        "z_lens": REDSHIFT, "center_radec": ("[0, 360]", "[-90, 90]"), "size_arcsec": POSITIVE,
        "n_members": AT_LEAST_ONE, "shear_gamma": "[0, 1)", "shear_angle_deg": ANY,
    },
    "MemberPopulationConfig": {
        "m_star_F814W": MAGNITUDE, "z_ref": REDSHIFT, "schechter_alpha": "[-5, 5]", "bright_offset_mag": ANY,
        "mag_limit_F814W": MAGNITUDE, "bcg_offset_mag": ANY, "sigma_star_kms": POSITIVE,
        "core_radius_star_kpc": NON_NEGATIVE, "cut_radius_star_kpc": POSITIVE, "re_star_kpc": POSITIVE,
        "re_luminosity_slope": ANY, "re_scatter_dex": NON_NEGATIVE, "sersic_n_range": "(0, 20]",
        "axis_ratio_range": "(0, 1]", "red_sequence_slope": ANY, "red_sequence_scatter_mag": NON_NEGATIVE,
        "core_radius_arcsec": POSITIVE, "edge_margin_arcsec": NON_NEGATIVE,
    },
    "ICLConfig": {"fraction_of_bcg_flux": NON_NEGATIVE, "re_kpc": POSITIVE, "sersic_n": "(0, 20]",
                  "axis_ratio": "(0, 1]"},
    "FieldGalaxyConfig": {
        "density_per_arcmin2": NON_NEGATIVE, "mag_bright_F814W": MAGNITUDE, "mag_limit_F814W": MAGNITUDE,
        "counts_slope": ANY, "spiral_fraction": FRACTION, "z_range": "[0, 20]", "re_arcsec_at_mag22": POSITIVE,
        "size_mag_slope": ANY,
    },
    "StarConfig": {"density_per_arcmin2": NON_NEGATIVE, "mag_bright_F814W": MAGNITUDE, "mag_limit_F814W": MAGNITUDE,
                   "spike_mag_limit": MAGNITUDE},
    "SyntheticConfig": {
        "depths": MAGNITUDE, "psf_size_pixels": "[3, inf)", "psf_fwhm_arcsec": POSITIVE,
        "deflection_pixel_arcsec": POSITIVE, "exposure_time_s": POSITIVE,
    },
    "UserFieldConfig": {"z_lens": REDSHIFT},
    "KBConfig": {"n_folds": "[2, inf)", "validation_fraction": "[0, 1)", "mocks_per_negative": POSITIVE,
                 "cutout_pixels": "[2, inf)"},
    "ValidateConfig": {
        "min_finite_fraction": FRACTION, "noise_ratio_range": POSITIVE, "background_max_sigma": POSITIVE,
        "mock_fraction_range": FRACTION, "theta_e_range_arcsec": NON_NEGATIVE, "dz_min": NON_NEGATIVE,
        "mag_max": MAGNITUDE, "fold_balance_tolerance": NON_NEGATIVE,
    },
    "NetworkConfig": {
        "input_pixels": "[2, inf)", "binning": AT_LEAST_ONE, "filters": AT_LEAST_ONE, "sc_vgg_filters": AT_LEAST_ONE,
        "convs_per_block": AT_LEAST_ONE, "dense_units": AT_LEAST_ONE, "dropout": "[0, 1)",
        "leaky_relu_slope": "[0, 1]", "normalisation_softening": POSITIVE,
    },
    "TrainConfig": {
        "batch_size": AT_LEAST_ONE, "learning_rate": POSITIVE, "max_epochs": AT_LEAST_ONE, "max_epochs_by_network": AT_LEAST_ONE,
        "warmup_epochs": NON_NEGATIVE, "early_stopping_patience": NON_NEGATIVE, "reduce_lr_patience": NON_NEGATIVE,
        "reduce_lr_factor": "(0, 1)", "min_learning_rate": NON_NEGATIVE, "examples_per_class": NON_NEGATIVE,
        "sc_vgg_branch_loss_weight": "[0, 10]",
    },
    "SearchDetectionConfig": {"thresh_sigma": POSITIVE, "minarea_pix": AT_LEAST_ONE, "tile_pix": AT_LEAST_ONE,
                              "margin_pix": NON_NEGATIVE},
    "SearchCleaningConfig": {
        "detect_thresh_sigma": POSITIVE, "detect_minarea_pix": AT_LEAST_ONE, "background_box_pix": AT_LEAST_ONE,
        "background_max_sigma": POSITIVE, "crowded_max_fraction": FRACTION, "masked_max_fraction": FRACTION,
        "star_mag_max": MAGNITUDE, "star_radius_arcsec": NON_NEGATIVE, "duplicate_radius_arcsec": NON_NEGATIVE,
        "center_radius_arcsec": POSITIVE,
    },
    "SearchGalleryConfig": {"max_candidates": NON_NEGATIVE, "stamp_arcsec": POSITIVE, "context_arcsec": POSITIVE,
                            "lupton_q": POSITIVE, "stretch_sigma": POSITIVE},
    "SearchRayConfig": {"num_cpus": AT_LEAST_ONE, "workers": AT_LEAST_ONE, "cpus_per_worker": POSITIVE,
                        "gpus_per_worker": NON_NEGATIVE, "object_store_mb": "[64, inf)"},
    "SearchDemoConfig": {"n_planted": NON_NEGATIVE, "max_draws": AT_LEAST_ONE},
    "SearchConfig": {
        "threshold": PROBABILITY, "cutout_pixels": "[2, inf)", "batch_size": AT_LEAST_ONE,
        "chunk_rows": AT_LEAST_ONE, "tp_min": PROBABILITY,
        "qtp_min": PROBABILITY, "match_radius_arcsec": POSITIVE,
    },
    "GateConfig": {"purity_min": PROBABILITY, "fpr": "(0, 1]"},
    "EvaluateConfig": {
        "threshold": PROBABILITY, "adversarial_source_mag_F814W": MAGNITUDE,
        "adversarial_theta_e_max_arcsec": NON_NEGATIVE, "fp_lens_mag_split": MAGNITUDE, "fp_colour_split": ANY,
        "fn_source_mag_splits": MAGNITUDE, "fn_theta_e_split_arcsec": NON_NEGATIVE, "fn_z_s_splits": "[0, 20]",
        "snr_bins": NON_NEGATIVE, "visible_snr_min": NON_NEGATIVE, "red_sequence_clip_sigma": POSITIVE,
        "red_sequence_lts_fraction": "(0, 1]", "histogram_bins": AT_LEAST_ONE, "purity_min": PROBABILITY,
        "fprs": "(0, 1]",
    },
    "CommitteeConfig": {"min_size": AT_LEAST_ONE, "max_size": AT_LEAST_ONE},
    "TuneConfig": {"purity_min": PROBABILITY, "qtp_band_purity_min": PROBABILITY, "n_trials": AT_LEAST_ONE},
    "PromoteConfig": {"min_improvement": "[-1, 1]"},
    "HPSearchDimension": {"low": ANY, "high": ANY},
    "HPSearchConfig": {"n_trials": AT_LEAST_ONE},
    "SourcePopulationConfig": {
        "mag_min": MAGNITUDE, "mag_limit": MAGNITUDE, "counts_mag_nodes": MAGNITUDE,
        "counts_log10_per_deg2_per_mag": ANY, "z_bin_mag_edges": MAGNITUDE, "z_bin_z0": POSITIVE, "z_max": REDSHIFT,
        "dz_min": NON_NEGATIVE, "re_const_kpc": NON_NEGATIVE, "re_z_pivot": NON_NEGATIVE, "re_norm_kpc": POSITIVE,
        "re_slope": ANY, "re_scatter_kpc": NON_NEGATIVE, "re_scatter_dex": "[0, 1]", "re_scatter_range_sigma": ANY, "sersic_n_range": "(0, 20]",
        "axis_ratio_range": "(0, 1]", "position_angle_range_deg": "[-360, 360]", "young_fraction": "[0, 1]",
    },
    "SimulateConfig": {
        "n_mocks": NON_NEGATIVE, "cutout_pixels": "[2, inf)", "supersampling": AT_LEAST_ONE,
        "psf_pad_pixels": NON_NEGATIVE, "buffer_re_fraction": NON_NEGATIVE, "buffer_theta_e_fraction": "[0, 2]",
        "inner_caustic_fraction": FRACTION,
        "lens_grid_radius_arcsec": POSITIVE,
        "lens_grid_step_arcsec": POSITIVE, "image_min_abs_magnification": NON_NEGATIVE, "max_rounds": AT_LEAST_ONE,
    },
    "NegativesConfig": {
        "n_negatives": NON_NEGATIVE, "cutout_pixels": "[2, inf)", "edge_margin_pixels": NON_NEGATIVE,
        "max_bad_pixel_fraction": FRACTION, "star_exclusion_radius_arcsec": NON_NEGATIVE,
        "star_mag_limit": MAGNITUDE, "strong_lens_theta_e_min_arcsec": NON_NEGATIVE,
        "strong_lens_source_redshift": REDSHIFT,
    },
    # ---- KB variants, hard negatives, the independent test set
    "VisibilityConfig": {"magnification_min": NON_NEGATIVE, "peak_sigma_min": NON_NEGATIVE,
                         "lensed_snr_min": NON_NEGATIVE, "images_in_cutout_min": NON_NEGATIVE,
                         "draws_per_round_max": AT_LEAST_ONE},
    "ConfuserConfig": {
        "neighbour_radius_arcsec": NON_NEGATIVE, "companions": AT_LEAST_ONE, "disc_re_arcsec": POSITIVE,
        "disc_mag_offset": ANY,
        "spiral_arms": NON_NEGATIVE, "spiral_pitch_deg": "[0, 90]", "edge_on_axis_ratio": "(0, 1]",
        "ring_radius_arcsec": POSITIVE, "ring_width_fraction": "(0, 1]", "ring_knots": NON_NEGATIVE,
        "pair_mag_offset": ANY, "star_mag_range": MAGNITUDE,
    },
    "IndependentDeflectorConfig": {
        "theta_e_range_arcsec": POSITIVE, "mass_axis_ratio_range": "(0, 1]", "shear_gamma_range": "[0, 1)",
        "mag_range_F814W": MAGNITUDE, "sersic_n_range": "(0, 20]", "re_range_arcsec": POSITIVE,
        "light_axis_ratio_range": "(0, 1]", "colour_F435W_F814W_range": ANY, "colour_F606W_F814W_range": ANY,
    },
    "IndependentSourceConfig": {
        "mag_range_F814W": MAGNITUDE, "sersic_n_range": "(0, 20]", "re_range_arcsec": POSITIVE,
        "axis_ratio_range": "(0, 1]", "colour_F435W_F814W_range": ANY, "colour_F606W_F814W_range": ANY,
        "position_max_theta_e": NON_NEGATIVE, "min_images": AT_LEAST_ONE, "min_images_in_cutout": AT_LEAST_ONE, "max_draws": AT_LEAST_ONE,
    },
    "IndependentConfusersConfig": {
        "fractions": NON_NEGATIVE, "companion_count_range": NON_NEGATIVE,
        "companion_distance_range_arcsec": NON_NEGATIVE, "companion_mag_range_F814W": MAGNITUDE,
        "disc_re_range_arcsec": POSITIVE, "disc_mag_range_F814W": MAGNITUDE, "bulge_to_total_range": FRACTION,
        "spiral_arm_amplitude_range": NON_NEGATIVE, "spiral_pitch_range_deg": "[0, 90]",
        "edge_on_axis_ratio_range": "(0, 1]", "pair_separation_range_arcsec": NON_NEGATIVE,
        "pair_delta_mag_range": ANY, "ring_radius_range_arcsec": POSITIVE, "ring_width_range_arcsec": POSITIVE,
        "ring_mag_range_F814W": MAGNITUDE, "star_mag_range_F814W": MAGNITUDE,
    },
    "IndependentConfig": {
        "n_lenses": NON_NEGATIVE, "n_nonlenses": NON_NEGATIVE, "cutout_pixels": "[2, inf)",
        "supersampling": AT_LEAST_ONE, "pad_pixels": NON_NEGATIVE, "psf_size_pixels": "[3, inf)",
        "psf_moffat_fwhm_arcsec": POSITIVE, "psf_moffat_beta": "(1, inf)", "depth_shallow": MAGNITUDE,
        "depth_deep": MAGNITUDE, "exposure_time_s_deep": POSITIVE, "field_galaxies_per_cutout": NON_NEGATIVE,
        "field_galaxy_mag_range_F814W": MAGNITUDE, "batch_size": AT_LEAST_ONE,
        "snr_bins": "[0, inf]",  # the last edge may be .inf (an open bin)
        "snr_min": NON_NEGATIVE, "fprs": "(0, 1]", "default_threshold": PROBABILITY,
    },
}
RANGES["NetworkConfig"].update({"resnet_filters": AT_LEAST_ONE, "resnet_blocks_per_stage": AT_LEAST_ONE,
                                "resnet_dropout": "[0, 1)"})
RANGES["NegativesConfig"].update({"hard_negatives": FRACTION})
RANGES["SimulateConfig"].update({"isolated_fraction": FRACTION, "isolated_shear_range": "[0, 1)",
                                 "isolated_sigma_scale": POSITIVE})
RANGES["ConfuserConfig"].update({"bulge_to_total": FRACTION, "young_fraction": FRACTION})

#: (section, first, second): ``first <= second``; (section, field, None): the two items of a pair field do not
#: decrease. Besides these, every field whose name holds ``_range`` and whose value is a pair is such a pair.
ORDERED: tuple[tuple[str, str, Optional[str]], ...] = (
    *((("ConfuserConfig", name, None)) for name in (
        "neighbour_radius_arcsec", "companions", "disc_re_arcsec", "disc_mag_offset", "spiral_arms",
        "spiral_pitch_deg", "edge_on_axis_ratio", "ring_radius_arcsec", "ring_width_fraction", "ring_knots",
        "pair_mag_offset", "bulge_to_total", "young_fraction")),
    ("CriticalLinesConfig", "theta_e_min_arcsec", "theta_e_max_arcsec"),
    ("MemberPopulationConfig", "sersic_n_range", None),
    ("MemberPopulationConfig", "axis_ratio_range", None),
    ("FieldGalaxyConfig", "mag_bright_F814W", "mag_limit_F814W"),
    ("FieldGalaxyConfig", "z_range", None),
    ("StarConfig", "mag_bright_F814W", "mag_limit_F814W"),
    ("ValidateConfig", "noise_ratio_range", None),
    ("ModelingNetworkConfig", "log_sigma_range", None),
    ("ValidateConfig", "mock_fraction_range", None),
    ("ValidateConfig", "theta_e_range_arcsec", None),
    ("SearchConfig", "qtp_min", "tp_min"),
    ("CommitteeConfig", "min_size", "max_size"),
    ("HPSearchDimension", "low", "high"),
    ("SourcePopulationConfig", "mag_min", "mag_limit"),
    ("SourcePopulationConfig", "re_scatter_range_sigma", None),
    ("SourcePopulationConfig", "sersic_n_range", None),
    ("SourcePopulationConfig", "axis_ratio_range", None),
    ("SourcePopulationConfig", "position_angle_range_deg", None),
    ("SourcePopulationConfig", "young_fraction", None),
)


# --------------------------------------------------------------------------------------------------- checking
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*$")


def _parse(spec: str) -> tuple[float, float, bool, bool]:
    """``"[1, inf)"`` -> (1.0, inf, low inclusive, high inclusive)."""
    if spec == ANY:
        return -math.inf, math.inf, False, False
    m = _INTERVAL.match(spec)
    if m is None:
        raise ValueError(f"bad range {spec!r}")  # a programming error in the table, caught by the tests
    return float(m.group(2)), float(m.group(3)), m.group(1) == "[", m.group(4) == "]"


def describe(spec: str) -> str:
    """A range in words: ``must be >= 1``, ``must be in [0, 1]``, ``must be a finite number``."""
    low, high, low_in, high_in = _parse(spec)
    if spec == ANY:
        return "must be a finite number"
    if math.isinf(high) and high_in:
        return f"must be {'>=' if low_in else '>'} {low:g} (or inf)"
    if math.isinf(high):
        return f"must be {'>=' if low_in else '>'} {low:g}"
    if math.isinf(low):
        return f"must be {'<=' if high_in else '<'} {high:g}"
    return f"must be in {spec.strip()}"


def _ok(value: float, spec: str) -> bool:
    if math.isnan(value):
        return False  # infinities pass only a range closed at infinity ("[0, inf]")
    low, high, low_in, high_in = _parse(spec)
    return (value > low or (low_in and value == low)) and (value < high or (high_in and value == high))


def _numbers(value: Any, key: str):
    """(dotted key, number) of a number, a list/tuple of numbers, or a mapping (nested) of numbers."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield key, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{key}[{i}]")
    elif hasattr(value, "items"):
        for k, v in value.items():
            yield from _numbers(v, f"{key}.{k}")


def range_error(section: str, values: dict[str, Any], prefix: str) -> Optional[str]:
    """The first value of a section (``values``: field -> converted value) outside its range, as
    ``"search.batch_size must be >= 1, got 0"``, or None when all are in range."""

    def dotted(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    for name, spec in RANGES.get(section, {}).items():
        if name not in values:
            continue
        value = values[name]
        if isinstance(spec, tuple):  # one range per item
            if value is None:
                continue
            for i, (item, item_spec) in enumerate(zip(value, spec)):
                for key, number in _numbers(item, f"{dotted(name)}[{i}]"):
                    if not _ok(number, item_spec):
                        return f"{key} {describe(item_spec)}, got {number!r}"
            continue
        for key, number in _numbers(value, dotted(name)):
            if not _ok(number, spec):
                return f"{key} {describe(spec)}, got {number!r}"
    pairs = [(section, name, None) for name, value in values.items()
             if "_range" in name and isinstance(value, tuple) and len(value) == 2
             and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)]
    for sec, first, second in (*ORDERED, *pairs):
        if sec != section or first not in values:
            continue
        if second is None:
            pair = values[first]
            if pair is not None and len(pair) == 2 and pair[0] > pair[1]:
                return f"{dotted(first)} must be [low, high] with low <= high, got {list(pair)}"
        elif values.get(first) is not None and values.get(second) is not None and values[first] > values[second]:
            return (f"{dotted(first)} ({values[first]!r}) must not exceed {dotted(second)} ({values[second]!r})")
    return None
