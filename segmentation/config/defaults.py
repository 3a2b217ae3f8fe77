"""Default configuration: one ``add_*_config`` function per key group, a comment on every key.

The defaults are those of the original Panoptic-DeepLab repository (bowenc0221/panoptic-deeplab) unless a comment
says otherwise; keys that the original hard-codes (Gaussian sigma, label divisor) are exposed here.
"""
from yacs.config import CfgNode as CN

# The configuration schema version. A file that states an older VERSION (every resolved config.yaml a run writes
# does) is upgraded by config/loader.py (UPGRADES) so that it keeps meaning what it meant; a file without VERSION
# (the original's YAML files, ours) is read as the current version.
# 2: MODEL.ALIGN_CORNERS and TEST.PAD_TO_CROP_SIZE added, True by default (version 1 behaved as False).
CONFIG_VERSION = 2

# Keys kept so that the original repository's YAML files load, but read by nothing here: setting one to another
# value than its default logs a warning with the reason (config/loader.py).
COMPATIBILITY_KEYS = {
    "GPUS": "devices come from DEVICE, and several processes from torchrun --nproc_per_node",
    "WORKERS": "DATALOADER.NUM_WORKERS sets the loader workers",
    "TEST.GPUS": "evaluation runs on DEVICE (several processes: torchrun)",
    "MODEL.PANOPTIC_DEEPLAB.INSTANCE.FOREGROUND_ARCH": "the original's foreground head is not part of this repository",
    "LOSS.SEMANTIC.REDUCTION": "every semantic loss averages over its pixels",
    "LOSS.CENTER.REDUCTION": "the centre loss is normalised by the centre weights",
    "LOSS.OFFSET.REDUCTION": "the offset loss is normalised by the offset weights",
    "DATALOADER.SAMPLER_TRAIN": "training always uses the exact-resume TrainingSampler",
    "DEBUG.TARGET_KEYS": "the TensorBoard grid draws DEBUG.OM_VARIABLES",
    "DEBUG.OUTPUT_KEYS": "the TensorBoard grid draws DEBUG.OM_VARIABLES",
    "DEBUG.KEEP_INTERVAL": "debug grids go to TensorBoard, not to PNG files",
    "TEST.FOREGROUND_FOLDER": "the original's foreground head is not part of this repository",
    "TEST.DEBUG": "validation panels: TEST.NUM_VIS",
}


def add_misc_config(cfg):
    cfg.VERSION = CONFIG_VERSION  # configuration schema version (see CONFIG_VERSION)
    cfg.OUTPUT_DIR = "./output"  # where checkpoints, logs, metrics and visualizations are written
    cfg.GPUS = (0,)  # kept for compatibility (COMPATIBILITY_KEYS): DEVICE and torchrun choose the devices
    cfg.DEVICE = "auto"  # "auto" (cuda if available, else cpu), "cpu" or "cuda"
    cfg.WORKERS = 4  # kept for compatibility with the original's YAML files; DATALOADER.NUM_WORKERS is used
    cfg.PRINT_FREQ = 20  # log a line every this many iterations
    cfg.CKPT_FREQ = 5000  # save OUTPUT_DIR/checkpoint.pth.tar every this many iterations
    cfg.SEED = 0  # seed of python, numpy and torch RNGs; negative: do not seed
    # minutes a process of a torchrun job waits in a collective before the job aborts. The main process alone runs
    # the official instance-AP evaluators (TEST.EVAL_INSTANCE) while the others wait: many minutes on Cityscapes or
    # COCO val, beyond the 10 minutes NCCL gives by default
    cfg.DIST_TIMEOUT = 60
    # intra-op threads of torch (and OpenCV) in training, evaluation and inference; 0: automatic, the CPUs this
    # process may use (affinity, cgroup quota) shared among the local processes, minus DATALOADER.NUM_WORKERS
    cfg.NUM_THREADS = 0
    cfg.CPU_KEEP_FREED_MEMORY = True  # on CPU (Linux, glibc): keep freed memory for reuse instead of returning it
    # to the system, so fresh tensors are not page-faulted in again (~10 % faster CPU steps, 2x faster OM targets;
    # the process keeps its peak memory). No effect on GPU runs


def add_cudnn_config(cfg):
    cfg.CUDNN = CN()
    cfg.CUDNN.BENCHMARK = True  # torch.backends.cudnn.benchmark (set by utils/runtime.configure_backends)
    cfg.CUDNN.DETERMINISTIC = False  # torch.backends.cudnn.deterministic
    cfg.CUDNN.ENABLED = True  # torch.backends.cudnn.enabled


def add_model_config(cfg):
    cfg.MODEL = CN()
    cfg.MODEL.META_ARCHITECTURE = "panoptic_deeplab"  # registry name: panoptic_deeplab, deeplabv3, deeplabv3plus
    cfg.MODEL.WEIGHTS = ""  # full-model initialisation from a checkpoint (loaded non-strictly, mismatches logged)
    cfg.MODEL.BN_MOMENTUM = 0.1  # momentum of every BatchNorm layer
    # Bilinear upsampling with align_corners=True, as the original (decoder, head outputs, HRNet branch fusion;
    # offsets scaled by (H - 1) / (h - 1)): exact for sizes k * stride + 1 (1025 x 2049). False: half-pixel
    # centres (offsets scaled by H / h), exact for multiples of the stride (the synthetic configs)
    cfg.MODEL.ALIGN_CORNERS = True
    # NHWC memory layout of the network's weights and input (oneDNN on CPUs, tensor cores with AMP on GPUs); the
    # outputs are made contiguous again for the OM and the decoding
    cfg.MODEL.CHANNELS_LAST = False
    cfg.MODEL.COMPILE = False  # torch.compile the network's forward (training and inference); the OM stays eager
    cfg.MODEL.COMPILE_MODE = "default"  # torch.compile mode: default, reduce-overhead, max-autotune
    cfg.MODEL.COMPILE_BACKEND = "inductor"  # torch.compile backend; aot_eager / eager trace without compiling
    cfg.MODEL.COMPILE_FULLGRAPH = True  # a graph break is an error naming it (False: fall back to eager around it)

    cfg.MODEL.BACKBONE = CN()
    cfg.MODEL.BACKBONE.META = "resnet"  # family of NAME, checked against it (empty: not checked): resnet,
    # mobilenet_v2, mnasnet, xception, hrnet
    cfg.MODEL.BACKBONE.NAME = "resnet50"  # registry name: resnet18/34/50/101, resnext50_32x4d, resnext101_32x8d,
    # wide_resnet50_2, wide_resnet101_2, mobilenet_v2, mnasnet0_5/0_75/1_0/1_3, xception65, hrnet18/32/48
    # Replace the stride of (res3, res4, res5) by dilation: output stride = 32 / 2**(number of True).
    # Valid: (F, F, F) = OS32, (F, F, T) = OS16, (F, T, T) = OS8. MobileNetV2 and MNASNet map them to their
    # stride-8/16/32 stages, Xception-65 to its entry/exit flows; HRNet accepts only (F, F, F).
    cfg.MODEL.BACKBONE.DILATION = (False, False, True)
    cfg.MODEL.BACKBONE.PRETRAINED = True  # download ImageNet weights through torch.hub (needs internet or a cache)
    cfg.MODEL.BACKBONE.WEIGHTS = ""  # local ImageNet weights file, used when PRETRAINED is False

    cfg.MODEL.DECODER = CN()
    cfg.MODEL.DECODER.IN_CHANNELS = 2048  # channels of the backbone feature fed to ASPP
    cfg.MODEL.DECODER.FEATURE_KEY = "res5"  # backbone output key fed to ASPP
    cfg.MODEL.DECODER.DECODER_CHANNELS = 256  # channels of the semantic decoder
    cfg.MODEL.DECODER.ATROUS_RATES = (6, 12, 18)  # ASPP dilation rates (use (3, 6, 9) at output stride 32)
    cfg.MODEL.DECODER.ASPP_DROPOUT = 0.5  # dropout after the ASPP projection (the original hard-codes 0.5)
    # conv types (decoder/conv_module.py CONV_REGISTRY: basic_conv, depthwise_separable_conv). The original
    # repository: regular atrous convs in ASPP, one 5x5 depthwise-separable conv in every fuse and head (these
    # defaults); the Panoptic-DeepLab paper: depthwise-separable everywhere (ASPP_CONV_TYPE depthwise_separable_conv)
    cfg.MODEL.DECODER.CONV_TYPE = "depthwise_separable_conv"  # fuse convs after each upsampling and the heads' conv
    cfg.MODEL.DECODER.CONV_KERNEL = 5  # kernel size of the fuse/head convs
    cfg.MODEL.DECODER.CONV_PADDING = 2  # padding of the fuse/head convs (kernel // 2 keeps the size)
    cfg.MODEL.DECODER.CONV_STACK = 1  # fuse convs after each upsampling (the heads always have one); DeepLabV3+
    # fuses with two 3x3 convs of CONV_TYPE, as the original
    cfg.MODEL.DECODER.ASPP_CONV_TYPE = "basic_conv"  # the three atrous ASPP branches

    cfg.MODEL.DEEPLABV3PLUS = CN()
    cfg.MODEL.DEEPLABV3PLUS.LOW_LEVEL_CHANNELS = 256  # channels of the low-level backbone feature
    cfg.MODEL.DEEPLABV3PLUS.LOW_LEVEL_KEY = "res2"  # backbone output key of the low-level feature
    cfg.MODEL.DEEPLABV3PLUS.LOW_LEVEL_CHANNELS_PROJECT = 48  # channels after the 1x1 low-level projection

    cfg.MODEL.PANOPTIC_DEEPLAB = CN()
    cfg.MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS = (512, 256)  # channels of each low-level feature, deepest first
    cfg.MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_KEY = ("res3", "res2")  # backbone keys of the low-level features
    cfg.MODEL.PANOPTIC_DEEPLAB.LOW_LEVEL_CHANNELS_PROJECT = (64, 32)  # semantic-branch projection channels
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE = CN()
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ENABLE = False  # add the instance branch (centre + offset heads)
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.LOW_LEVEL_CHANNELS_PROJECT = (32, 16)  # instance-branch projections
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.DECODER_CHANNELS = 128  # channels of the instance decoder
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.HEAD_CHANNELS = 128  # channels inside the centre/offset heads
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.ASPP_CHANNELS = 256  # channels of the instance-branch ASPP
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.NUM_CLASSES = (1, 2)  # output channels of the instance heads
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.CLASS_KEY = ("center", "offset")  # output names of the instance heads
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.FOREGROUND_SEG = False  # original key, never read there; must stay False
    cfg.MODEL.PANOPTIC_DEEPLAB.INSTANCE.FOREGROUND_ARCH = "v1"  # original key, never read there


def add_om_config(cfg):
    cfg.OM = CN()
    cfg.OM.NAME = ""  # output-mathematics base formulation (e.g. "panoptic-deeplab"); empty: conventional path
    cfg.OM.BASE = ""  # deprecated alias of OM.NAME, read by configs of the original ModulOM repository
    cfg.OM.MIXINS = ()  # OM mixins applied on top of OM.NAME, the last listed has the highest precedence
    # static bound on thing segments per image in the OM targets off the CPU and when compiled; exceeding it is an
    # error there (on CUDA the generic "device-side assert triggered", which the tools' error line explains)
    cfg.OM.MAX_INSTANCES = 256
    cfg.OM.RELEASE = True  # evaluation frees intermediate OM variables once nothing requested still needs them
    cfg.OM.LEARNABLE_CENTERS = CN()
    cfg.OM.LEARNABLE_CENTERS.DETACH = False  # learnable-centers: stop the gradient through the vote means
    cfg.OM.PUSH_PULL = CN()
    cfg.OM.PUSH_PULL.WEIGHT = 1.0  # push-pull: weight of the term added to the offset loss (lambda_wrc)
    cfg.OM.HUBER_OFFSETS = CN()
    cfg.OM.HUBER_OFFSETS.BETA = 4.0  # huber-offsets: error (pixels) below which the offset loss is quadratic
    cfg.OM.FOCAL_CENTERS = CN()
    cfg.OM.FOCAL_CENTERS.ALPHA = 2.0  # focal-centers: exponent of the focusing factors (1-p)^a and p^a (CenterNet: 2)
    cfg.OM.FOCAL_CENTERS.BETA = 4.0  # focal-centers: exponent of the (1-y)^b penalty reduction near peaks (CenterNet 4)
    cfg.OM.FOCAL_CENTERS.PRIOR_LOGIT = -2.19  # focal-centers: added to the head's output (CenterNet's bias init, p=0.1)
    cfg.OM.HARD_PIXEL_CENTERS = CN()
    cfg.OM.HARD_PIXEL_CENTERS.TOP_K_PERCENT = 0.2  # hard-pixel-centers: fraction of the heatmap pixels that count
    cfg.OM.SIZE_ADAPTIVE_SIGMA = CN()
    cfg.OM.SIZE_ADAPTIVE_SIGMA.MIN_OVERLAP = 0.7  # size-adaptive-sigma: IoU a box keeps within the CornerNet radius
    cfg.OM.SIZE_ADAPTIVE_SIGMA.MIN_SIGMA = 1.0  # size-adaptive-sigma: smallest std (pixels)
    cfg.OM.SIZE_ADAPTIVE_SIGMA.MAX_SIGMA = 12.0  # size-adaptive-sigma: largest std (pixels); also sizes the windows


def add_dataset_config(cfg):
    cfg.DATASET = CN()
    cfg.DATASET.ROOT = "./datasets/cityscapes"  # dataset folder (the synthetic dataset ignores it)
    cfg.DATASET.DATASET = "cityscapes"  # registry name of the dataset, e.g. synthetic_panoptic
    cfg.DATASET.NUM_CLASSES = 19  # number of semantic (train id) classes; must match the dataset metadata
    cfg.DATASET.TRAIN_SPLIT = "train"  # split used for training
    cfg.DATASET.TEST_SPLIT = "val"  # split used for evaluation
    cfg.DATASET.CROP_SIZE = (513, 1025)  # training crop (height, width)
    cfg.DATASET.MIRROR = True  # random horizontal flip during training
    cfg.DATASET.MIN_SCALE = 0.5  # smallest random rescaling factor during training
    cfg.DATASET.MAX_SCALE = 2.0  # largest random rescaling factor during training
    cfg.DATASET.SCALE_STEP_SIZE = 0.1  # scales are drawn from arange(MIN, MAX + step, step); 0: uniform
    cfg.DATASET.MEAN = (0.485, 0.456, 0.406)  # RGB normalisation mean (images in [0, 1])
    cfg.DATASET.STD = (0.229, 0.224, 0.225)  # RGB normalisation std
    cfg.DATASET.SEMANTIC_ONLY = False  # return only semantic targets (DeepLabV3/V3+ training)
    cfg.DATASET.IGNORE_STUFF_IN_OFFSET = True  # offset loss only on thing pixels
    cfg.DATASET.SMALL_INSTANCE_AREA = 0  # instances below this area (pixels, after cropping) get a larger weight
    cfg.DATASET.SMALL_INSTANCE_WEIGHT = 1  # semantic-loss weight of small-instance pixels
    cfg.DATASET.IGNORE_CROWD_IN_SEMANTIC = False  # crowd pixels get the ignore label in the semantic target
    cfg.DATASET.GAUSSIAN_SIGMA = 8  # std (pixels) of the centre heatmap Gaussian; the original hard-codes 8
    cfg.DATASET.LABEL_DIVISOR = 0  # panoptic id = class * this + instance; 0: the dataset's own (hard-coded there)
    cfg.DATASET.PAN_ONLY = False  # loaders ship only image + panoptic map; targets are computed by the OM
    cfg.DATASET.MIN_RESIZE_VALUE = -1  # pre-augmentation resize: shortest side (COCO); -1 disables
    cfg.DATASET.MAX_RESIZE_VALUE = -1  # pre-augmentation resize: longest side cap (COCO); -1 disables
    cfg.DATASET.RESIZE_FACTOR = -1  # pre-augmentation resize: sizes rounded to a multiple of this; -1 disables
    cfg.DATASET.JSON_FILE = ""  # coco_panoptic_format: panoptic JSON, relative to ROOT; "{split}" is replaced
    cfg.DATASET.PANOPTIC_DIR = ""  # coco_panoptic_format: folder of the RGB-encoded panoptic PNGs
    cfg.DATASET.IMAGE_DIR = ""  # coco_panoptic_format: folder of the images
    # turn images as their EXIF orientation tag says (as viewers show them): for annotations drawn on photos so;
    # False reads the stored pixels (Cityscapes, COCO, and the official evaluators); tools/check_dataset.py tells
    cfg.DATASET.EXIF_UPRIGHT = False
    cfg.DATASET.SYNTHETIC = CN()  # procedural synthetic dataset (DATASET.DATASET = synthetic_panoptic)
    cfg.DATASET.SYNTHETIC.IMAGE_SIZE = (128, 256)  # (height, width) of every generated image
    cfg.DATASET.SYNTHETIC.TRAIN_SIZE = 400  # number of images in the train split
    cfg.DATASET.SYNTHETIC.VAL_SIZE = 50  # number of images in the val split
    cfg.DATASET.SYNTHETIC.SEED = 0  # base seed: image i of a split is drawn from (SEED, split, i) alone
    cfg.DATASET.SYNTHETIC.MAX_OBJECTS = 8  # at most this many thing instances per image
    cfg.DATASET.SYNTHETIC.CROWD_PROB = 0.3  # probability that an image contains a crowd region


def add_solver_config(cfg):
    cfg.SOLVER = CN()
    cfg.SOLVER.BASE_LR = 0.01  # base learning rate
    cfg.SOLVER.WEIGHT_DECAY = 0.0001  # weight decay of conv/linear weights
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0  # weight decay of normalisation-layer parameters
    cfg.SOLVER.BIAS_LR_FACTOR = 2.0  # learning rate of biases = BASE_LR * this
    cfg.SOLVER.WEIGHT_DECAY_BIAS = 0.0  # weight decay of biases
    cfg.SOLVER.MOMENTUM = 0.9  # SGD momentum
    cfg.SOLVER.OPTIMIZER = "sgd"  # registry name: sgd, adam, adamw
    cfg.SOLVER.ADAM_BETAS = (0.9, 0.999)  # Adam betas
    cfg.SOLVER.ADAM_EPS = 1e-08  # Adam epsilon
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"  # WarmupPolyLR, WarmupMultiStepLR, WarmupCosineLR
    cfg.SOLVER.STEPS = (30000,)  # WarmupMultiStepLR milestones (iterations)
    cfg.SOLVER.GAMMA = 0.1  # WarmupMultiStepLR decay factor
    cfg.SOLVER.WARMUP_FACTOR = 1.0 / 1000  # learning-rate factor at iteration 0 of the warmup
    cfg.SOLVER.WARMUP_ITERS = 1000  # warmup length in iterations
    cfg.SOLVER.WARMUP_METHOD = "linear"  # linear or constant
    cfg.SOLVER.POLY_LR_POWER = 0.9  # WarmupPolyLR power
    cfg.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0  # WarmupPolyLR: stop decaying once the factor reaches this
    cfg.SOLVER.AMP = CN()
    cfg.SOLVER.AMP.ENABLED = False  # mixed precision for the network (OM targets, losses, decoding stay float32)
    cfg.SOLVER.AMP.DTYPE = "auto"  # auto (bfloat16 on CPU, float16 + grad scaler on CUDA), float16, bfloat16
    cfg.SOLVER.CLIP_GRADIENTS = CN()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = False  # clip gradients before each optimizer step
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"  # value (elementwise) or norm (per parameter)
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0  # clipping threshold
    cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0  # norm order for CLIP_TYPE norm


def add_loss_config(cfg):
    cfg.LOSS = CN()
    cfg.LOSS.SEMANTIC = CN()
    cfg.LOSS.SEMANTIC.NAME = "cross_entropy"  # registry name: cross_entropy, ohem, hard_pixel_mining
    cfg.LOSS.SEMANTIC.IGNORE = 255  # label ignored by the semantic loss
    cfg.LOSS.SEMANTIC.REDUCTION = "mean"  # kept for compatibility; every semantic loss averages
    cfg.LOSS.SEMANTIC.THRESHOLD = 0.7  # ohem: keep pixels whose true-class probability is below this
    cfg.LOSS.SEMANTIC.MIN_KEPT = 100000  # ohem: keep at least this many pixels
    cfg.LOSS.SEMANTIC.TOP_K_PERCENT = 1.0  # hard_pixel_mining: fraction of the hardest pixels kept
    cfg.LOSS.SEMANTIC.WEIGHT = 1.0  # weight of the semantic loss in the total
    cfg.LOSS.CENTER = CN()
    cfg.LOSS.CENTER.NAME = "mse"  # registry name: mse
    cfg.LOSS.CENTER.REDUCTION = "none"  # kept for compatibility; normalised by the centre weights
    cfg.LOSS.CENTER.WEIGHT = 200.0  # weight of the centre loss in the total
    cfg.LOSS.OFFSET = CN()
    cfg.LOSS.OFFSET.NAME = "l1"  # registry name: l1
    cfg.LOSS.OFFSET.REDUCTION = "none"  # kept for compatibility; normalised by the offset weights
    cfg.LOSS.OFFSET.WEIGHT = 0.01  # weight of the offset loss in the total


def add_train_config(cfg):
    cfg.TRAIN = CN()
    cfg.TRAIN.IMS_PER_BATCH = 32  # global batch per optimizer step, summed over processes and micro-batches
    cfg.TRAIN.ACCUMULATE_STEPS = 1  # gradient accumulation: micro-batches per optimizer step
    cfg.TRAIN.MAX_ITER = 90000  # number of training iterations
    cfg.TRAIN.RESUME = False  # resume from OUTPUT_DIR/checkpoint.pth.tar if it exists; the current config's
    # hyperparameters and schedule apply (differences from the checkpoint's config are logged)
    cfg.TRAIN.KEEP_LAST = 3  # keep this many numbered checkpoints (checkpoint_<iter>.pth); 0: only the latest


def add_dataloader_config(cfg):
    cfg.DATALOADER = CN()
    cfg.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # kept for compatibility (COMPATIBILITY_KEYS)
    cfg.DATALOADER.TRAIN_SHUFFLE = True  # shuffle the training set
    cfg.DATALOADER.NUM_WORKERS = 4  # DataLoader worker processes (0: load in the main process)


def add_debug_config(cfg):
    cfg.DEBUG = CN()
    cfg.DEBUG.DEBUG = True  # save debug image grids during training
    cfg.DEBUG.DEBUG_FREQ = 100  # every this many iterations
    cfg.DEBUG.TARGET_KEYS = (  # kept for compatibility (COMPATIBILITY_KEYS); see OM_VARIABLES
        "semantic", "center", "offset", "semantic_weights", "center_weights", "offset_weights")
    cfg.DEBUG.OUTPUT_KEYS = ("semantic", "center", "offset")  # kept for compatibility; see OM_VARIABLES
    cfg.DEBUG.KEEP_INTERVAL = 1000  # original key (debug PNG retention); grids now go to TensorBoard
    cfg.DEBUG.TENSORBOARD = True  # TensorBoard scalars every PRINT_FREQ, images every DEBUG_FREQ (if installed)
    cfg.DEBUG.OM_VARIABLES = (  # OM variables drawn in the TensorBoard image grid, one column each
        "image", "semantic_truth", "semantic_pred", "center_truth", "center_pred", "offset_truth", "offset_pred",
        "panoptic_pred")


def add_test_config(cfg):
    cfg.TEST = CN()
    cfg.TEST.GPUS = (0,)  # kept for compatibility; evaluation uses DEVICE
    cfg.TEST.CROP_SIZE = (1025, 2049)  # test images are padded to this size (see PAD_TO_CROP_SIZE)
    # True: pad test images at the bottom/right with the mean colour to CROP_SIZE, as the original (a larger image:
    # to CROP_SIZE + a multiple of 32, keeping its alignment); False: to the next multiple of 32
    cfg.TEST.PAD_TO_CROP_SIZE = True
    cfg.TEST.SEMANTIC_FOLDER = "semantic"  # sub-folder of OUTPUT_DIR for semantic predictions
    cfg.TEST.INSTANCE_FOLDER = "instance"  # sub-folder of OUTPUT_DIR for instance predictions
    cfg.TEST.PANOPTIC_FOLDER = "panoptic"  # sub-folder of OUTPUT_DIR for panoptic predictions
    cfg.TEST.FOREGROUND_FOLDER = "foreground"  # kept for compatibility (COMPATIBILITY_KEYS)
    cfg.TEST.SAVE_PREDICTIONS = False  # write predictions in the official formats into the three folders above:
    # eval-id semantic PNGs, COCO-panoptic PNGs + <PANOPTIC_FOLDER>.json, the instance evaluator's files
    cfg.TEST.EVAL_INSTANCE = False  # also evaluate instance AP/AP50: coco_panoptic (pycocotools on
    # instances_{split}2017.json), cityscapes / cityscapes_panoptic (cityscapesscripts on gtFine instanceIds PNGs)
    cfg.TEST.EVAL_PANOPTIC = True  # evaluate PQ/SQ/RQ (the original defaults to False)
    cfg.TEST.EVAL_FOREGROUND = False  # original key; foreground evaluation is not implemented (raises)
    cfg.TEST.MODEL_FILE = ""  # checkpoint to evaluate; empty: MODEL.WEIGHTS, then OUTPUT_DIR/final_state.pth
    # test-time augmentation (engine/inference.py): on when TEST_TIME_AUGMENTATION, FLIP_TEST or a SCALE_LIST other
    # than (1,) asks for it; softmax probabilities, centre heatmaps and offsets are averaged, then decoded once
    cfg.TEST.TEST_TIME_AUGMENTATION = False  # average over SCALE_LIST (and flips with FLIP_TEST)
    cfg.TEST.FLIP_TEST = False  # also run the horizontally mirrored image (mirrored offsets have x negated)
    cfg.TEST.SCALE_LIST = (1,)  # input scales, e.g. (0.75, 1.0, 1.25); outputs resized back, offsets rescaled
    cfg.TEST.DEBUG = False  # original key (debug grids at test time); see TEST.NUM_VIS
    cfg.TEST.NUM_VIS = 4  # number of validation images drawn as image | ground truth | prediction PNGs
    cfg.TEST.MAX_IMAGES = -1  # evaluate only the first N images of the split; -1: all
    cfg.TEST.EVAL_PERIOD = 0  # evaluate on TEST_SPLIT every this many training iterations (and at the end); 0: off
    cfg.TEST.BEST_METRIC = "PQ"  # metrics.json key that picks OUTPUT_DIR/best.pth during training (higher is better)
    cfg.TEST.ORACLE_SEMANTIC = False  # replace the semantic prediction by the ground truth
    cfg.TEST.ORACLE_FOREGROUND = False  # original key; not implemented (raises)
    cfg.TEST.ORACLE_CENTER = False  # replace the centre heatmap by the ground truth
    cfg.TEST.ORACLE_OFFSET = False  # replace the offsets by the ground truth
    cfg.TEST.INSTANCE_SCORE_TYPE = "semantic"  # instance score for AP: semantic (mean class probability over the
    # mask), instance (centre heatmap at the mask centroid), both (their product)


def add_post_processing_config(cfg):
    cfg.POST_PROCESSING = CN()
    cfg.POST_PROCESSING.CENTER_THRESHOLD = 0.1  # heatmap values at or below this are not centres
    cfg.POST_PROCESSING.NMS_KERNEL = 7  # max-pool window of the centre non-maximum suppression
    cfg.POST_PROCESSING.TOP_K_INSTANCE = 200  # keep at most this many centres (strict rule of the original)
    cfg.POST_PROCESSING.STUFF_AREA = 2048  # stuff segments smaller than this (pixels) become void


_ADDERS = (
    add_misc_config, add_cudnn_config, add_model_config, add_om_config, add_dataset_config, add_solver_config,
    add_loss_config, add_train_config, add_dataloader_config, add_debug_config, add_test_config,
    add_post_processing_config,
)


def get_default_config():
    """A fresh, mutable CfgNode holding every key with its default."""
    cfg = CN()
    for add in _ADDERS:
        add(cfg)
    return cfg
