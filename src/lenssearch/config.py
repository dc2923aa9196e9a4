"""Typed, frozen configuration read from ``params.yaml``.

``params.yaml`` is the demo profile; alternative profiles (``configs/paper.yaml``) are overlays whose keys
replace those of ``params.yaml`` (a deep merge). Every section of the YAML maps to one frozen dataclass below;
an unknown key, a missing key or a number outside its range (:mod:`lenssearch.config_ranges`) raises
:class:`ConfigError` naming the dotted key and the file.

To add a section: write its dataclass here, add a field of that type to :class:`Config`, and add the section to
``params.yaml`` (and, where the paper differs, to ``configs/paper.yaml``). Derived values are properties, never
extra YAML keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from lenssearch.config_ranges import range_error


class ConfigError(ValueError):
    """A configuration file has an unknown, missing or ill-typed key."""


# --------------------------------------------------------------------------------------------------- sections
@dataclasses.dataclass(frozen=True)
class CosmologyConfig:
    """Flat LambdaCDM cosmology (astropy)."""

    H0: float
    Om0: float


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Settings shared by every stage."""

    seed: int
    pixel_scale_arcsec: float
    bands: tuple[str, ...]
    cosmology: CosmologyConfig


@dataclasses.dataclass(frozen=True)
class CriticalLinesConfig:
    """Secondary (galaxy-scale) tangential critical lines (Angora et al. 2023, Sect. 3.1)."""

    theta_e_min_arcsec: float
    theta_e_max_arcsec: float
    resolution_arcsec: float
    search_radius_arcsec: float
    source_redshifts: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class LensToolFieldConfig:
    """A real cluster mass model given as a LensTool parameter file."""

    name: str
    parfile: str
    members: str
    map_size_arcsec: float
    map_pixel_arcsec: float
    light_depth: Optional[str] = None  # a field.synthetic.depths preset: paint synthetic HST light (fields/painted.py)
    image_size_arcsec: float = 100.0  # side of the painted images, centred on the model's reference
    lenstool_mag_band: str = "F160W"  # band of the member catalogue's magnitudes


@dataclasses.dataclass(frozen=True)
class HaloConfig:
    """A cluster-scale dPIE halo (LensTool profil 81) of a synthetic field, placed relative to the field centre."""

    sigma_kms: float
    core_radius_kpc: float
    cut_radius_kpc: float
    emass: float
    angle_deg: float
    x_arcsec: float
    y_arcsec: float


@dataclasses.dataclass(frozen=True)
class SyntheticFieldEntry:
    """One synthetic HST/ACS cluster field (``fields/synthetic.py``)."""

    name: str
    z_lens: float
    center_radec: tuple[float, float]
    size_arcsec: float
    n_members: int  # including the BCG
    depth: str  # key of field.synthetic.depths
    halos: tuple[HaloConfig, ...]
    shear_gamma: float
    shear_angle_deg: float


@dataclasses.dataclass(frozen=True)
class MemberPopulationConfig:
    """Cluster members: Schechter luminosity function, red sequence, sizes and the LensTool mass scaling."""

    m_star_F814W: float  # apparent Schechter m* at z_ref (shifted with the distance modulus)
    z_ref: float
    schechter_alpha: float
    bright_offset_mag: float  # brightest non-BCG member at m* - this
    mag_limit_F814W: float
    bcg_offset_mag: float  # BCG at m* - this
    sigma_star_kms: float  # sigma = sigma* (L/L*)^(1/4)
    core_radius_star_kpc: float  # r_core = r_core* (L/L*)^(1/2)
    cut_radius_star_kpc: float  # r_cut = r_cut* (L/L*)^(1/2)
    re_star_kpc: float  # R_e = R_e* (L/L*)^slope, log-normal scatter
    re_luminosity_slope: float
    re_scatter_dex: float
    sersic_n_range: tuple[float, float]  # faint -> bright
    axis_ratio_range: tuple[float, float]
    red_sequence_slope: float  # d(m_F435W - m_F814W)/d(m_F814W); other colours scale with the template's
    red_sequence_scatter_mag: float  # scatter of m_F435W - m_F814W (likewise scaled)
    core_radius_arcsec: float  # projected number density ~ 1 / (1 + r^2 / r_c^2)
    edge_margin_arcsec: float


@dataclasses.dataclass(frozen=True)
class ICLConfig:
    """Intracluster light: a smooth Sersic around the BCG."""

    fraction_of_bcg_flux: float
    re_kpc: float
    sersic_n: float
    axis_ratio: float


@dataclasses.dataclass(frozen=True)
class FieldGalaxyConfig:
    """Foreground and background field galaxies (ellipticals and blue spiral discs)."""

    density_per_arcmin2: float  # between the magnitude limits
    mag_bright_F814W: float
    mag_limit_F814W: float
    counts_slope: float  # d log10 N / dm
    spiral_fraction: float
    z_range: tuple[float, float]
    re_arcsec_at_mag22: float
    size_mag_slope: float  # d log10 R_e / dm


@dataclasses.dataclass(frozen=True)
class StarConfig:
    """Stars: PSF-shaped point sources, the bright ones with diffraction-like spikes."""

    density_per_arcmin2: float
    mag_bright_F814W: float
    mag_limit_F814W: float
    spike_mag_limit: float


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic HST/ACS cluster fields (``field.synthetic``)."""

    fields: tuple[SyntheticFieldEntry, ...]
    depths: dict[str, dict[str, float]]  # preset -> band -> 5-sigma point-source AB depth
    psf_size_pixels: int
    psf_fwhm_arcsec: dict[str, float]  # modelled bands (F814W uses the empirical ACS PSF)
    deflection_pixel_arcsec: float
    source_poisson: bool
    exposure_time_s: dict[str, float]  # for the sources' Poisson noise
    members: MemberPopulationConfig
    icl: ICLConfig
    field_galaxies: FieldGalaxyConfig
    stars: StarConfig


@dataclasses.dataclass(frozen=True)
class UserFieldConfig:
    """A user's field: one FITS image per band, a deflection FITS or a LensTool file, a member catalogue."""

    name: str
    images: dict[str, str]  # band -> FITS path
    members: str  # ECSV/CSV/FITS table with ra, dec, z and mag_<band>
    z_lens: float
    deflection: Optional[str] = None
    lenstool: Optional[str] = None
    psfs: Optional[dict[str, str]] = None  # band -> FITS path; modelled/empirical PSFs when absent
    ignore_band_keywords: bool = False  # true: do not refuse images whose FILTER*/PHOTPLAM name another band


@dataclasses.dataclass(frozen=True)
class FieldConfig:
    """The ``field`` stage: cluster fields, their deflection maps and critical lines."""

    critical_lines: CriticalLinesConfig
    lenstool: tuple[LensToolFieldConfig, ...]
    synthetic: SyntheticConfig
    user: tuple[UserFieldConfig, ...] = ()


@dataclasses.dataclass(frozen=True)
class KBConfig:
    """The ``kb`` stage: one HDF5 knowledge base with stratified folds (Angora et al. 2023, Sect. 3.2)."""

    n_folds: int  # stratified k-fold cross-validation part
    validation_fraction: float  # held-out validation split (fold -1)
    mocks_per_negative: float  # class ratio; the larger class is subsampled to it
    cutout_pixels: int


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
    """The ``validate`` stage: great-expectations suite over the KB (``kb/validation.py``)."""

    min_finite_fraction: float
    noise_ratio_range: tuple[float, float]  # measured / expected background sigma
    background_max_sigma: float  # |background level| in units of the expected sigma
    mock_fraction_range: tuple[float, float]
    theta_e_range_arcsec: tuple[float, float]
    dz_min: float  # z_s >= z_lens + dz_min
    mag_max: float
    fold_balance_tolerance: float  # relative deviation of fold sizes and label fractions


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Architecture and input preparation shared by the VGG-like networks (Angora et al. 2023, Sect. 2)."""

    input_pixels: int  # side of the raw cutouts the registered models take (the KB's cutouts)
    binning: int  # average-pooling factor inside the model (2: 128 -> 64 pixels, same 3.84" field)
    filters: tuple[int, ...]  # one convolution block per entry, each closed by a 2x2 max pooling
    sc_vgg_filters: tuple[int, ...]  # filters of each of SC-VGG's three branches (same depth as filters)
    convs_per_block: int
    dense_units: tuple[int, int]  # the two dense layers before the sigmoid output
    dropout: float
    leaky_relu_slope: float
    normalisation_softening: float  # asinh stretch turns logarithmic above this many noise sigmas
    resnet_filters: tuple[int, ...]  # ResNet: filters of each stage (the first stage keeps the resolution)
    resnet_blocks_per_stage: int  # residual blocks (two 3x3 convolutions + identity/projection) per stage
    resnet_dropout: Optional[float] = None  # the ResNet's dropout (its one dense layer); None: ``dropout``


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``train`` stage: stratified k-fold training of one network (folds come from the KB)."""

    network: NetworkConfig
    batch_size: dict[str, int]  # per network (the paper: 32 for VGG, 16 for SC-VGG)
    optimizer: Literal["adadelta", "adam"]  # the paper: Adadelta (Zeiler 2012); Adam converges in fewer epochs
    learning_rate: float  # Adadelta: 1.0 (Zeiler 2012); Adam: 1e-3 (Kingma & Ba 2015)
    max_epochs: int
    max_epochs_by_network: dict[str, int]  # networks that need more (or fewer) epochs than max_epochs
    warmup_epochs: int  # epochs before early stopping and the LR schedule start watching the validation loss
    early_stopping_patience: int
    reduce_lr_patience: int
    reduce_lr_factor: float
    min_learning_rate: float
    examples_per_class: int  # balanced training examples per class and epoch; 0: the majority class's count
    deterministic: bool  # tf.config.experimental.enable_op_determinism
    mixed_precision: Union[bool, Literal["auto"]]  # bfloat16 compute (float32 weights, loss and output); auto:
    # where the CPU (AVX512-BF16, AMX) or a GPU computes bfloat16 natively (elsewhere it is emulated, several x slower)
    run_model: Literal["retrain", "fold_mean"]  # retrain on all folds, or average the k fold models' weights
    test_time_symmetries: Literal[1, 2, 4, 8]  # every prediction (out-of-fold ones included) averages this many
    # symmetries of the square of each cutout (lenssearch.models.test_time_model); 1: none
    kb_variant: dict[str, str]  # network -> the KB variant (``variants``) it is trained on
    sc_vgg_branch_loss_weight: float = 0.0  # SC-VGG: + this x the mean of its branches' own losses (0: the paper)


@dataclasses.dataclass(frozen=True)
class SearchDetectionConfig:
    """Source detection with sep when a field is searched without a catalogue (tiled: bounded memory)."""

    band: str
    thresh_sigma: float
    minarea_pix: int
    tile_pix: int
    margin_pix: int


@dataclasses.dataclass(frozen=True)
class SearchCleaningConfig:
    """False-positive cleaning of the candidates (HOLISMOKES XVI, Schuldt et al. 2025, Sect. 3.1 and 4)."""

    detect_thresh_sigma: float  # sep detection threshold, units of the band's pixel noise
    detect_minarea_pix: int
    background_box_pix: int  # sep background mesh
    background_max_sigma: float  # residual |background| in any band, units of the pixel noise
    crowded_max_fraction: float  # detected pixels in any band (HOLISMOKES XVI: 0.99)
    masked_max_fraction: float  # no-data (zero) pixels
    star_mag_max: float  # stars brighter than this (stars.ecsv) reject nearby cutouts
    star_radius_arcsec: float
    duplicate_radius_arcsec: float  # HOLISMOKES XVI: 2"
    kron_band: str  # duplicates keep the largest Kron radius in this band
    center_radius_arcsec: float  # the central source is the detection nearest the centre within this


@dataclasses.dataclass(frozen=True)
class SearchGalleryConfig:
    """HTML gallery of the candidates (Lupton RGB stamps)."""

    max_candidates: int
    stamp_arcsec: float
    context_arcsec: float
    lupton_q: float
    stretch_sigma: float  # Lupton linear stretch in units of the pixel noise


@dataclasses.dataclass(frozen=True)
class SearchDemoConfig:
    """The held-out synthetic field of the demo search (``search-field`` stage, ``search/demo.py``)."""

    name: str  # a new field name: a fresh realisation of the template cluster (its own random stream)
    template: str  # an entry of field.synthetic.fields
    n_planted: int  # lenses planted with the simulate stage's injection
    max_draws: int
    variant: str | None  # plant lenses with this KB variant's cuts and sources (cluster lenses only); None: simulate


@dataclasses.dataclass(frozen=True)
class SearchRayConfig:
    """``lenssearch search --engine ray``: Ray Data with an actor pool that holds the model."""

    address: Optional[str]  # a Ray cluster (e.g. ray://head:10001); null: a local Ray on this machine
    num_cpus: int  # CPUs of the local Ray (ignored with an address)
    workers: int  # actors in the pool, each holding one copy of the model
    cpus_per_worker: float
    gpus_per_worker: float  # 0 on CPU machines; 1 to give each actor a GPU
    object_store_mb: int  # the local Ray's object store


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The ``search`` stage and the ``known-lenses`` verb (Angora et al. 2023, Sect. 5; HOLISMOKES XVI)."""

    model_uri: str
    threshold: Optional[float]  # null: the registered version's tuned threshold tag, else 0.5
    cutout_pixels: int
    batch_size: int
    chunk_rows: int  # catalogue rows per output chunk: one row group of scores.parquet, one Ray shard
    great_expectations: bool  # run the KB's great-expectations suite once per chunk (besides the inline checks)
    tp_min: float  # Table A.6: TP p >= 0.5
    qtp_min: float  # qTP 0.2 <= p < 0.5, FN p < 0.2
    match_radius_arcsec: float  # planted/known lens <-> catalogue position
    detection: SearchDetectionConfig
    cleaning: SearchCleaningConfig
    gallery: SearchGalleryConfig
    demo: SearchDemoConfig
    ray: SearchRayConfig


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """A threshold-free score ranking models (``lenssearch.evaluate.metrics.GATE_METRICS``; larger is better)."""

    metric: Literal["completeness_at_purity", "auc", "max_f1", "tpr_at_fpr"]
    purity_min: float  # for completeness_at_purity
    fpr: float  # for tpr_at_fpr; must be >= 1 / N_neg to be measurable


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` stage: Tables A.1-A.5 and Figs. 6, 8, 9, 11, A.1 of Angora et al. 2023."""

    networks: tuple[str, ...]
    tables_variant: str  # the KB variant of Tables A.1-A.5 (the paper's protocol: angora)
    threshold: float  # Angora et al. 2023, Sect. 4.1: 0.5
    adversarial_source_mag_F814W: float  # Table A.1 notes: sources fainter than this ...
    adversarial_theta_e_max_arcsec: float  # ... and lenses smaller than this are adversarial
    adversarial_rule: Literal["or", "and"]  # "or": either condition marks an adversarial example
    fp_lens_mag_split: float  # Table A.4 rows
    fp_colour_split: float
    fn_source_mag_splits: tuple[float, ...]  # Table A.5 rows
    fn_theta_e_split_arcsec: float
    fn_z_s_splits: tuple[float, ...]
    snr_bins: tuple[float, ...]  # edges of the lensed-source S/N bins (the last bin is open); not in the paper
    visible_snr_min: float  # lenses at or above this S/N in a network's bands count as visible (auc_visible)
    red_sequence_clip_sigma: float  # LTS_LINEFIT clipping (Cappellari et al. 2013: 2.6)
    red_sequence_lts_fraction: float  # h / N of the LTS subset
    histogram_bins: int
    purity_min: float  # completeness at purity >= this, logged for every model
    fprs: tuple[float, ...]  # TPR at these FPRs (HOLISMOKES XVI: 1e-2, 1e-3, 1e-4)
    experiment: str  # MLflow experiment holding networks and committees on the same metrics


@dataclasses.dataclass(frozen=True)
class CommitteeConfig:
    """The ``committee`` stage: committees of networks by mean or product (HOLISMOKES XVI, Sect. 2)."""

    members: tuple[str, ...]  # candidate members; every combination of min_size..max_size is evaluated
    min_size: int
    max_size: int
    rules: tuple[Literal["mean", "product"], ...]
    select: GateConfig  # ranks the committees
    log_models: bool  # log the best committee of each rule as a pyfunc model wrapping its members


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """The ``tune`` stage: Optuna-tuned decision threshold and qTP lower bound per network and committee."""

    objective: Literal["f1", "completeness_at_purity", "crossing"]
    purity_min: float  # for completeness_at_purity
    qtp_band_purity_min: float  # lens fraction required in the qTP band [qtp_lower, threshold)
    n_trials: int


@dataclasses.dataclass(frozen=True)
class PromoteConfig:
    """The ``promote`` stage: register the best model and move the alias only when it beats the champion."""

    registered_model: str  # models:/<registered_model>@<alias>
    alias: str
    gate: GateConfig
    min_improvement: float  # the challenger must beat the champion's gate value by more than this


@dataclasses.dataclass(frozen=True)
class HPSearchDimension:
    """One dimension of the hyper-parameter search: a dotted params key and its range or choices."""

    key: str  # e.g. train.learning_rate
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    choices: Optional[tuple[Any, ...]] = None


@dataclasses.dataclass(frozen=True)
class HPSearchConfig:
    """Optuna search over network hyper-parameters (MLproject entry point ``hpsearch``, not in dvc repro)."""

    network: str
    n_trials: int
    gate: GateConfig  # objective: the gate metric of the trial's out-of-fold predictions
    space: tuple[HPSearchDimension, ...]


@dataclasses.dataclass(frozen=True)
class SourcePopulationConfig:
    """Background sources of the mocks (Angora et al. 2023, Sect. 3.1, Table 2; see simulate/sources.py)."""

    mag_min: float
    mag_limit: float
    counts_mag_nodes: tuple[float, ...]
    counts_log10_per_deg2_per_mag: tuple[float, ...]
    z_bin_mag_edges: tuple[float, ...]
    z_bin_forms: tuple[str, ...]
    z_bin_z0: tuple[float, ...]
    z_max: float
    dz_min: float
    re_const_kpc: float
    re_z_pivot: float
    re_norm_kpc: float
    re_slope: float
    re_scatter_kpc: float
    re_scatter_range_sigma: tuple[float, float]
    re_scatter_dex: float
    sersic_n_range: tuple[float, float]
    axis_ratio_range: tuple[float, float]
    position_angle_range_deg: tuple[float, float]
    sed: str
    young_fraction: tuple[float, float]  # F814W light fraction in a young flat-f_nu burst, per source (0: template)


@dataclasses.dataclass(frozen=True)
class VisibilityConfig:
    """Which mocks are kept as lenses (HOLISMOKES: Canameras et al. 2021, Sect. 2.2; 0 disables a cut)."""

    magnification_min: float  # total magnification of the source
    peak_sigma_min: float  # brightest lensed-source pixel (noiseless, PSF-convolved), in background sigma, any band
    lensed_snr_min: float  # matched-filter S/N of the lensed source, the bands in quadrature
    images_in_cutout_min: int  # point-source images (|mu| >= image_min_abs_magnification) inside the cutout
    draws_per_round_max: int  # candidates drawn per round at most (draws follow the measured acceptance)


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    """The ``simulate`` stage: mock GGSLs injected at secondary caustics (simulate/inject.py)."""

    n_mocks: int
    cutout_pixels: int
    supersampling: int
    psf_pad_pixels: int
    buffer_re_fraction: float
    buffer_theta_e_fraction: float  # the caustic grown by this fraction of theta_E too (0: the paper's placement)
    inner_caustic_fraction: float  # share of sources drawn inside the caustic (+ the R_e buffer) alone: quads
    lens_grid_radius_arcsec: float
    lens_grid_step_arcsec: float
    image_min_abs_magnification: float
    max_rounds: int
    theta_e_weighting: Literal["theta_e", "uniform"]  # lines drawn prop. to theta_E (the paper) or flat in theta_E
    isolated_fraction: float  # mocks lensed by the member's own mass + external shear, without the cluster
    isolated_shear_range: tuple[float, float]  # external shear of an isolated member (one draw per member)
    isolated_sigma_scale: float  # field / member velocity dispersion at a given luminosity (SIE of the isolated lens)
    sources: SourcePopulationConfig
    visibility: VisibilityConfig


@dataclasses.dataclass(frozen=True)
class NegativesConfig:
    """The ``negatives`` stage: member cutouts without injection (simulate/negatives.py)."""

    n_negatives: int
    cutout_pixels: int
    edge_margin_pixels: int
    max_bad_pixel_fraction: float
    star_exclusion_radius_arcsec: float
    star_mag_limit: float
    # null: no member is excluded for its own critical line (the paper's vetted negatives may host mocks too)
    strong_lens_theta_e_min_arcsec: Optional[float]
    strong_lens_source_redshift: float
    match_hosts: bool  # draw the non-lenses' hosts from the mocks' hosts (no host-brightness shortcut)
    # plain cutouts under match_hosts: "members" (distinct mock hosts, by their mock counts) or "magnitude"
    # (distinct members matched to the mock hosts' magnitudes, when plain cutouts outnumber the hosts)
    plain_matching: Literal["members", "magnitude"]
    hard_negatives: dict[str, float]  # confuser kind -> fraction of the non-lenses (simulate/confusers.py)
    confusers: ConfuserConfig


@dataclasses.dataclass(frozen=True)
class ConfuserConfig:
    """Geometry and brightness of the hard negatives injected into member cutouts (simulate/confusers.py)."""

    neighbour_radius_arcsec: tuple[float, float]  # blue companions, pairs, stars: distance from the centre
    companion_mag_from_arcs: bool  # companions as bright as the variant's lensed arcs (else the source counts)
    companions: tuple[int, int]  # blue companions per blue_companion non-lens, uniform in the range
    disc_re_arcsec: tuple[float, float]  # spiral and edge-on discs
    disc_mag_offset: tuple[float, float]  # disc galaxy F814W magnitude - the template member's F814W magnitude
    bulge_to_total: tuple[float, float]  # disc galaxies' bulge-to-total flux ratio
    spiral_arms: tuple[int, int]
    spiral_pitch_deg: tuple[float, float]
    edge_on_axis_ratio: tuple[float, float]
    ring_radius_arcsec: tuple[float, float]
    ring_width_fraction: tuple[float, float]  # ring Gaussian width / radius
    ring_knots: tuple[int, int]  # star-forming knots along the ring
    young_fraction: tuple[float, float]  # share of a disc's or ring's F814W light in a young burst (flat f_nu)
    pair_mag_offset: tuple[float, float]  # companion early-type magnitude - host magnitude
    star_mag_range: tuple[float, float]  # F814W AB


@dataclasses.dataclass(frozen=True)
class IndependentDeflectorConfig:
    """Lens galaxies of the independent test set: SIE + external shear mass, elliptical Sersic light."""

    theta_e_range_arcsec: tuple[float, float]  # uniform
    mass_axis_ratio_range: tuple[float, float]  # SIE q, uniform
    shear_gamma_range: tuple[float, float]  # |gamma|, uniform, random angle
    mag_range_F814W: tuple[float, float]  # AB, uniform
    sersic_n_range: tuple[float, float]
    re_range_arcsec: tuple[float, float]  # log-uniform
    light_axis_ratio_range: tuple[float, float]
    colour_F435W_F814W_range: tuple[float, float]  # red early-type colours
    colour_F606W_F814W_range: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class IndependentSourceConfig:
    """Background sources of the independent lenses: elliptical Sersic, blue, inside or near the caustic."""

    mag_range_F814W: tuple[float, float]  # intrinsic (unlensed) AB, uniform
    sersic_n_range: tuple[float, float]
    re_range_arcsec: tuple[float, float]  # log-uniform
    axis_ratio_range: tuple[float, float]
    colour_F435W_F814W_range: tuple[float, float]
    colour_F606W_F814W_range: tuple[float, float]
    position_max_theta_e: float  # source centre uniform in a disc of this radius (units of theta_E)
    min_images: int  # the centre must have at least this many images (strong lensing); redrawn otherwise
    min_images_in_cutout: int  # ... and this many of them inside the cutout with |mu| >= 0.1
    max_draws: int  # redraws of the source position before the disc is shrunk towards the caustic centre


@dataclasses.dataclass(frozen=True)
class IndependentConfusersConfig:
    """Non-lenses of the independent test set: the kinds and their fractions, and their own ranges."""

    fractions: dict[str, float]  # kind -> fraction of the non-lenses (normalised in code)
    companion_count_range: tuple[int, int]  # blue_companion: unlensed blue neighbours within 2"
    companion_distance_range_arcsec: tuple[float, float]
    companion_mag_range_F814W: tuple[float, float]
    disc_re_range_arcsec: tuple[float, float]  # spiral and edge_on discs
    disc_mag_range_F814W: tuple[float, float]
    bulge_to_total_range: tuple[float, float]
    spiral_arm_amplitude_range: tuple[float, float]
    spiral_pitch_range_deg: tuple[float, float]
    edge_on_axis_ratio_range: tuple[float, float]
    pair_separation_range_arcsec: tuple[float, float]  # pairs and mergers
    pair_delta_mag_range: tuple[float, float]
    ring_radius_range_arcsec: tuple[float, float]  # blue (partial) rings around an early-type galaxy
    ring_width_range_arcsec: tuple[float, float]
    ring_mag_range_F814W: tuple[float, float]
    star_mag_range_F814W: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class IndependentConfig:
    """The ``independent-set`` and ``independent`` stages: a test set simulated with lenstronomy, never trained on."""

    n_lenses: int
    n_nonlenses: int
    cutout_pixels: int
    supersampling: int  # sub-pixels per side of the surface-brightness grid
    pad_pixels: int  # rendered around the cutout so that PSF wings of nearby light enter it
    psf_size_pixels: int  # odd
    psf_moffat_fwhm_arcsec: dict[str, float]  # Moffat PSFs of the bands other than F814W (empirical ACS PSF)
    psf_moffat_beta: float
    depth_shallow: dict[str, float]  # 5-sigma point-source AB limits; each cutout draws a depth between them
    depth_deep: dict[str, float]
    exposure_time_s_deep: dict[str, float]  # at the deep limit (scaled with the depth) for the sources' Poisson noise
    source_poisson: bool
    field_galaxies_per_cutout: float  # mean number of faint unrelated galaxies in every cutout (both classes)
    field_galaxy_mag_range_F814W: tuple[float, float]
    deflector: IndependentDeflectorConfig
    source: IndependentSourceConfig
    confusers: IndependentConfusersConfig
    models: tuple[str, ...]  # model URIs scored by the ``independent`` stage
    batch_size: int
    snr_bins: tuple[float, ...]  # edges of the arc-S/N bins (the last may be .inf)
    snr_min: float  # AUC of the lenses at or above this arc S/N against all non-lenses
    fprs: tuple[float, ...]  # TPR at these false-positive rates ("not measurable" below 1 / N_neg)
    default_threshold: float  # threshold of a model without a tuned threshold tag
    experiment: str  # MLflow experiment


@dataclasses.dataclass(frozen=True)
class ModelingNetworkConfig:
    """The modeling network's architecture (:mod:`lenssearch.models.modeling`)."""

    input_pixels: int  # side of the raw cutouts it takes (the KB's)
    binning: int  # average pooling inside the model
    normalisation_softening: float
    stem_stride: int  # 1: the stem keeps the (binned) resolution; 2: halves it like the classifier's
    filters: tuple[int, ...]  # ResNet stages
    blocks_per_stage: int
    dense_units: int
    dropout: float
    leaky_relu_slope: float
    log_sigma_range: tuple[float, float]  # standardised log-sigma is clipped to it


@dataclasses.dataclass(frozen=True)
class ModelingRejectConfig:
    """The ``model-candidates`` stage's cuts on the predicted uncertainties (HOLISMOKES XVI, Sect. 3.2)."""

    parameters: tuple[str, ...]  # the parameters whose sigma is cut (of simulate/truth.PARAMETERS)
    margin: float  # residual range widened by log(margin) each side (>= 1: none of the held-out KB lenses lost)
    trend_degree: int  # degree of the log-sigma trend with log predicted theta_E (0: HOLISMOKES's flat range)
    cross_check_folds: int  # folds of the held-out lenses for the cross-checked loss of unseen lenses


@dataclasses.dataclass(frozen=True)
class ModelingConfig:
    """The ``modeling`` stage: a network that predicts the lens parameters with uncertainties (HOLISMOKES IX)."""

    kb_variant: str  # the lenses (and truth) of this KB variant
    test_fold: int  # the KB fold held out for the validation report and the cuts; the others train
    network: ModelingNetworkConfig
    batch_size: int
    learning_rate: float
    max_epochs: int
    early_stopping_patience: int
    min_learning_rate: float  # the cosine decay's floor, reached at max_epochs
    mixed_precision: Union[bool, Literal["auto"]]  # as train.mixed_precision
    shift_arcsec: float  # largest offset of a lens from the cutout centre in the augmentation and held-out sets
    theta_e_bins: tuple[float, ...]  # edges of the validation's theta_E bins (arcsec)
    snr_bins: tuple[float, ...]  # edges of its arc-S/N bins
    theta_e_min_arcsec: float  # the theta_E accuracy figure uses lenses at or above this
    registered_model: str
    experiment: str
    reject: ModelingRejectConfig


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole configuration: one attribute per section of ``params.yaml``."""

    base: BaseConfig
    field: FieldConfig
    simulate: SimulateConfig
    negatives: NegativesConfig
    kb: KBConfig
    validate: ValidateConfig
    train: TrainConfig
    search: SearchConfig
    evaluate: EvaluateConfig
    committee: CommitteeConfig
    tune: TuneConfig
    promote: PromoteConfig
    hpsearch: HPSearchConfig
    modeling: ModelingConfig
    variants: dict[str, Any]  # KB ground-truth variants: name -> overlay of the simulate/negatives/kb sections
    independent: IndependentConfig


# --------------------------------------------------------------------------------------------------- loading
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert a YAML value to the annotated type ``tp``, raising ConfigError naming ``key``."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' must be a mapping (section {tp.__name__}), got {value!r}")
        return _build(tp, value, key, source)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{source}: key '{key}' has value {value!r}, expected {_type_name(tp)}")
    if origin is Literal:  # the same type too: YAML's true (== 1) and 4.0 (== 4) are not the integers 1 and 4
        if not any(type(value) is type(arg) and value == arg for arg in get_args(tp)):
            raise ConfigError(f"{source}: key '{key}' must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: key '{key}' must be a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{source}: key '{key}' must have {len(args)} items, got {len(value)}")
            items = [_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [_convert(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' must be a mapping, got {value!r}")
        _, vt = get_args(tp) or (Any, Any)
        return types.MappingProxyType({k: _convert(v, vt, f"{key}.{k}", source) for k, v in value.items()})
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: key '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: key '{key}': unsupported annotation {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, data: dict, prefix: str, source: str) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(f"'{prefix + '.' if prefix else ''}{k}'" for k in unknown)
        raise ConfigError(f"{source}: unknown key {names} (section {cls.__name__} accepts {sorted(fields)})")
    kwargs = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if field.default is not dataclasses.MISSING:
                kwargs[name] = field.default
                continue
            if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                kwargs[name] = field.default_factory()  # type: ignore[misc]
                continue
            raise ConfigError(f"{source}: missing key '{key}'")
        kwargs[name] = _convert(data[name], hints[name], key, source)
    problem = range_error(cls.__name__, kwargs, prefix)  # ranges: lenssearch/config_ranges.py
    if problem:
        raise ConfigError(f"{source}: {problem}")
    return cls(**kwargs)


def deep_merge(base: dict, overlay: dict) -> dict:
    """Return ``base`` with ``overlay``'s keys replacing its own, recursively for mappings."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, raising ConfigError (not a traceback) for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at top level")
    return data


#: The sections a KB variant may override (everything else is shared by every variant: fields, depth, PSF).
VARIANT_SECTIONS = ("simulate", "negatives", "kb", "validate")


def config_from_dict(data: dict, source: str = "<dict>") -> Config:
    """Build the typed configuration from an already-parsed mapping (every KB variant is checked too)."""
    cfg = _build(Config, data, "", source)
    for name in cfg.variants:
        with_variant(cfg, name, source)
    return cfg


def with_variant(cfg: Config, name: str, source: str = "params") -> Config:
    """``cfg`` with the KB variant ``name`` (``variants.<name>``) merged over its simulate/negatives/kb/validate
    sections.

    A variant (HOLISMOKES XVI, Sect. 2: networks trained on different ground truths) changes only what is drawn
    and kept, never the fields, their depth or PSF. An unknown variant or key is a :class:`ConfigError`.
    """
    if name not in cfg.variants:
        raise ConfigError(f"{source}: unknown KB variant '{name}' (variants: {sorted(cfg.variants)})")
    overlay = cfg.variants[name] or {}
    if not isinstance(overlay, typing.Mapping):
        raise ConfigError(f"{source}: key 'variants.{name}' must be a mapping of sections, got {overlay!r}")
    bad = sorted(set(overlay) - set(VARIANT_SECTIONS))
    if bad:
        raise ConfigError(f"{source}: key 'variants.{name}' may override only {list(VARIANT_SECTIONS)}, got {bad}")
    replaced = {}
    for section, values in overlay.items():
        merged = deep_merge(as_dict(getattr(cfg, section)), _plain_mapping(values))
        section_cls = type(getattr(cfg, section))
        replaced[section] = _build(section_cls, merged, section, f"{source} (variant '{name}')")
    return dataclasses.replace(cfg, **replaced)


def _plain_mapping(value: Any) -> Any:
    if isinstance(value, typing.Mapping):
        return {k: _plain_mapping(v) for k, v in value.items()}
    return value


def load_config(path: str | Path = "params.yaml", profile: str | Path | None = None,
                variant: str | None = None) -> Config:
    """Read ``params.yaml`` (and optionally a profile overlay such as ``configs/paper.yaml``).

    Parameters
    ----------
    path
        The demo profile, ``params.yaml``.
    profile
        An overlay whose keys replace those of ``path``; its unknown keys are reported against its own name.
    variant
        A KB variant (``variants.<name>``) merged over the simulate/negatives/kb sections (:func:`with_variant`).
    """
    data = read_yaml(path)
    source = str(path)
    if profile is not None:
        overlay = read_yaml(profile)
        data = deep_merge(data, overlay)
        source = f"{path} + {profile}"
    cfg = config_from_dict(data, source)
    return with_variant(cfg, variant, source) if variant is not None else cfg


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Flatten a nested mapping into dotted keys (for MLflow params and ``dvc exp run -S``)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def as_dict(cfg: Any) -> dict:
    """A frozen config section as a plain nested dict (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, typing.Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)
