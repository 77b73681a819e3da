"""Default values of every config key, one assignment per line with a trailing comment.

Every leaf assignment below carries a one-line comment giving its meaning and unit;
`sniper.config.key_comments()` reads them back from this file's source and the tests check
that no key lacks one. Keep each assignment on a single line (or put the comment on its first
line) so that the parser finds it.

Frames: "chip px" = pixels of a network input (a chip or a rescaled test image);
"image px" = pixels of the original image. Scales are a float factor on the original image
or a [short, long] pair (scale so the short side is `short`, capped so the long side is at
most `long`; [512, 512] = long side 512).
"""

from __future__ import annotations

from fvcore.common.config import CfgNode


def base_defaults(cfg: CfgNode) -> CfgNode:
    """Fill `cfg` (an empty CfgNode) with the detectron2-style keys and return it."""
    cfg.OUTPUT_DIR = "./output"  # folder for checkpoints, metrics.json, logs (path)
    cfg.SEED = 0  # seed of the chips and of the RNGs (SEED + rank) (int); < 0 = random, logged
    _model_defaults(cfg)
    _head_defaults(cfg)
    _data_defaults(cfg)
    _solver_defaults(cfg)
    return cfg


def _model_defaults(_C: CfgNode) -> None:
    """MODEL, MODEL.BACKBONE and MODEL.FPN keys."""
    CN = type(_C)
    _C.MODEL = CN()  # the detector
    _C.MODEL.META_ARCHITECTURE = "SniperRCNN"  # META_ARCH_REGISTRY name; "SniperRPN" = no RoI heads
    _C.MODEL.DEVICE = "cpu"  # torch device the model runs on ("cpu", "cuda", "cuda:N")
    _C.MODEL.WEIGHTS = ""  # detector: .pth / Detectron .pkl | "torchvision://<weights>" | ""
    _C.MODEL.NUM_CLASSES = 80  # number of object classes, background excluded (count)
    _C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]  # per-channel mean, RGB order (0-255 scale)
    _C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]  # per-channel std, RGB order (0-255 scale)
    _C.MODEL.ANCHOR_SIZES = [[32], [64], [128], [256], [512]]  # anchor sides per level (chip px)
    _C.MODEL.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]  # anchor h/w ratios, one list or one per level

    _C.MODEL.BACKBONE = CN()  # trunk network
    _C.MODEL.BACKBONE.NAME = "resnet50_fpn"  # BACKBONE_REGISTRY name: mobilenet_v2_fpn, resnetN_fpn
    _C.MODEL.BACKBONE.NORM = "BN"  # trunk norm: FrozenBN | BN (per GPU) | SyncBN | GN | SN[_INLN]
    _C.MODEL.BACKBONE.FREEZE_AT = 1  # stages frozen: 0 none, 1 stem, 2 stem+res2, ... (count)
    _C.MODEL.BACKBONE.WEIGHTS = ""  # ImageNet: .pth/Detectron .pkl|torchvision|offline|"" random
    _C.MODEL.BACKBONE.STRIDE_IN_1X1 = False  # res3-5 stride in the 1x1 conv (MSRA/Detectron) (bool)

    _C.MODEL.FPN = CN()  # feature pyramid
    _C.MODEL.FPN.OUT_CHANNELS = 256  # channels of every pyramid level (count)
    _C.MODEL.FPN.MIN_LEVEL = 2  # finest pyramid level: 2 = stride 4 px, 3 = stride 8 px (level)
    _C.MODEL.FPN.USE_P6 = True  # add P6 (stride 2**6 px) by subsampling P5, used by the RPN (bool)
    _C.MODEL.FPN.NORM = ""  # norm after each FPN conv: "" none | "BN" | "SN" | "SN_INLN"


def _head_defaults(_C: CfgNode) -> None:
    """MODEL.RPN, MODEL.ROI_HEADS, MODEL.ROI_BOX_HEAD, MODEL.MASK_ON and MODEL.ROI_MASK_HEAD."""
    CN = type(_C)
    _C.MODEL.RPN = CN()  # region proposal network (IoU thresholds live in SNIPER.RPN_*)
    _C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000  # proposals kept per level before NMS, training (count)
    _C.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000  # proposals kept per level before NMS, inference (count)
    _C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 1000  # proposals kept per image after NMS, training (count)
    _C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000  # proposals kept per image after NMS, inference (count)
    _C.MODEL.RPN.NMS_THRESH = 0.7  # IoU above which NMS suppresses a proposal (IoU, 0-1)
    _C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256  # anchors sampled per image for the RPN loss (count)
    _C.MODEL.RPN.POSITIVE_FRACTION = 0.5  # max fraction of positives among sampled anchors (0-1)
    _C.MODEL.RPN.CONV_DEPTH = 1  # 3x3 conv+ReLU layers of the RPN head before its outputs (count)

    _C.MODEL.ROI_HEADS = CN()  # second stage: sampling, matching and inference
    _C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512  # proposals sampled per image, loss (count)
    _C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25  # max fraction of positives among samples (0-1)
    _C.MODEL.ROI_HEADS.FG_IOU = 0.5  # IoU with a GT box at or above which a proposal is fg (0-1)
    _C.MODEL.ROI_HEADS.BG_IOU = 0.5  # IoU with every GT box below which a proposal is bg (0-1)
    _C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05  # min class score of a detection (probability)
    _C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5  # per-class NMS IoU per network input (IoU, 0-1)
    _C.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 300  # detections kept per network input (count)

    _C.MODEL.ROI_BOX_HEAD = CN()  # box head on pooled RoI features
    _C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0  # 3x3 conv(+norm)+ReLU layers before the fc layers (count)
    _C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256  # output channels of each box head conv (channels)
    _C.MODEL.ROI_BOX_HEAD.NORM = ""  # norm after each box head conv: "" none | BN | SN | SN_INLN
    _C.MODEL.ROI_BOX_HEAD.NUM_FC = 2  # fully connected layers after RoIAlign (count)
    _C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024  # width of each fully connected layer (units)
    _C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7  # RoIAlign output side (cells)
    _C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 2  # RoIAlign samples per cell side (count)
    _C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = [10.0, 10.0, 5.0, 5.0]  # box delta weights dx,dy,dw,dh

    _C.MODEL.MASK_ON = False  # add the mask branch (instance masks on chips, COCO segm AP) (bool)
    _C.MODEL.ROI_MASK_HEAD = CN()  # mask head on pooled RoI features (torchvision's Mask R-CNN)
    _C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14  # RoIAlign output side; masks are 2x (cells)
    _C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 2  # RoIAlign samples per cell side (count)
    _C.MODEL.ROI_MASK_HEAD.NUM_CONV = 4  # 3x3 conv(+norm)+ReLU layers before the deconv (count)
    _C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256  # channels of each mask conv and of the deconv (channels)
    _C.MODEL.ROI_MASK_HEAD.NORM = ""  # norm after each mask head conv: "" none | BN | SN | SN_INLN


def _data_defaults(_C: CfgNode) -> None:
    """INPUT, DATASETS and DATALOADER keys."""
    CN = type(_C)
    _C.INPUT = CN()  # network input format
    _C.INPUT.FORMAT = "RGB"  # channel order of images given to the model ("RGB" | "BGR"), 0-255
    _C.INPUT.RANDOM_FLIP = "horizontal"  # training chip flip ("horizontal" | "none"), p = 0.5

    _C.DATASETS = CN()  # registered dataset names
    _C.DATASETS.TRAIN = ()  # dataset names used for training (DatasetCatalog names)
    _C.DATASETS.TEST = ()  # dataset names used for evaluation (DatasetCatalog names)
    _C.DATASETS.REGISTER_COCO = []  # COCO jsons registered first: [[name, json, image_root]] paths

    _C.DATALOADER = CN()  # data loading
    _C.DATALOADER.NUM_WORKERS = 2  # worker processes per data loader (count)
    _C.DATALOADER.SAMPLER_TRAIN = "ChipSampler"  # "ChipSampler" (SNIPER) | "WholeImageSampler"
    _C.DATALOADER.ASPECT_RATIO_GROUPING = True  # whole images: landscape/portrait batches (bool)


def _solver_defaults(_C: CfgNode) -> None:
    """SOLVER and TEST keys."""
    CN = type(_C)
    _C.SOLVER = CN()  # optimisation
    _C.SOLVER.BASE_LR = 0.02  # SGD learning rate after warm-up (per IMS_PER_BATCH chips)
    _C.SOLVER.MOMENTUM = 0.9  # SGD momentum (0-1)
    _C.SOLVER.WEIGHT_DECAY = 1e-4  # L2 weight decay (per step, multiplies weights)
    _C.SOLVER.SN_IMPORTANCE_WEIGHT_DECAY = 0.0  # L2 decay of SN importance logits (NORM "SN")
    _C.SOLVER.SN_IMPORTANCE_LR_FACTOR = 1.0  # LR of SN importance logits / BASE_LR (factor)
    _C.SOLVER.IMS_PER_BATCH = 16  # chips per batch summed over all GPUs/processes (count)
    _C.SOLVER.ITER_SIZE = 1  # batches whose gradients are averaged into one SGD step (count)
    _C.SOLVER.REFERENCE_WORLD_SIZE = 0  # processes IMS_PER_BATCH is for; > 0: adaptive schedule
    _C.SOLVER.REFERENCE_BATCH_SIZE = 0  # chips/step LR + schedule are for; 0 = IMS_PER_BATCH
    _C.SOLVER.MAX_ITER = 40000  # training length (iterations)
    _C.SOLVER.STEPS = (30000,)  # iterations at which the LR is multiplied by GAMMA (iterations)
    _C.SOLVER.GAMMA = 0.1  # LR decay factor at each step (factor)
    _C.SOLVER.WARMUP_ITERS = 1000  # linear warm-up length (iterations)
    _C.SOLVER.WARMUP_FACTOR = 0.001  # LR multiplier at iteration 0 of the warm-up (factor)
    _C.SOLVER.CHECKPOINT_PERIOD = 5000  # save a checkpoint every N iterations (iterations)

    _C.SOLVER.CLIP_GRADIENTS = CN()  # gradient clipping
    _C.SOLVER.CLIP_GRADIENTS.ENABLED = False  # clip gradients before each step (bool)
    _C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"  # "norm": total L2 norm; "value": per element
    _C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 10.0  # max gradient L2 norm or max abs value (grad units)

    _C.SOLVER.AMP = CN()  # automatic mixed precision
    _C.SOLVER.AMP.ENABLED = False  # run forward/backward under torch.autocast (bool)
    _C.SOLVER.AMP.DTYPE = "float16"  # autocast dtype ("float16" | "bfloat16")

    _C.TEST = CN()  # evaluation schedule
    _C.TEST.EVAL_PERIOD = 0  # evaluate every N training iterations, 0 = only at the end (iters)
    _C.TEST.SN_BATCH_AVERAGE_ITERS = 0  # SN batch stats: average of N train batches at the end
    _C.TEST.MAX_DETS_PER_IMAGE = 100  # detections per image that COCO AP scores, maxDets (count)


def sniper_defaults(cfg: CfgNode) -> CfgNode:
    """Add the `SNIPER` node (docs/design.md section 4) to `cfg` and return it."""
    CN = type(cfg)
    cfg.SNIPER = CN()  # SNIPER chips, label assignment and multi-scale inference
    cfg.SNIPER.TRAIN_SCALES = [3.0, 1.667, [512, 512]]  # train scales: factor | [short, long] px
    cfg.SNIPER.VALID_RANGES = [[-1, 80], [32, 150], [120, -1]]  # box size range/scale (image px)
    cfg.SNIPER.CHIP_SIZE = 512  # side of every square training chip (chip px)
    cfg.SNIPER.CHIP_STRIDE = 32  # step between candidate chips of the grid (chip px)
    cfg.SNIPER.STRIDE_JITTER = False  # random grid offset and tie order per epoch (bool)
    cfg.SNIPER.MIN_BOX_SIZE = 2.0  # GT narrower than this after clipping is removed (chip px)
    cfg.SNIPER.NEG_CHIPS_PER_IMAGE = 2  # negative chips sampled per image per epoch (count)
    cfg.SNIPER.NEG_MIN_PROPOSALS = [25, 10, 10]  # proposals a neg chip must hold, per train scale
    cfg.SNIPER.NEG_RPN_EPOCHS = 2  # length of the RPN-only mining schedule (epochs)
    cfg.SNIPER.PROPOSALS_FILE = ""  # precomputed proposals for negative chips (path); "" = mine
    cfg.SNIPER.RPN_IGNORE_IOU = 0.3  # anchor IoU with an ignore box above which it is -1 (0-1)
    cfg.SNIPER.RPN_POS_IOU = 0.5  # anchor IoU with a valid GT at or above which it is fg (0-1)
    cfg.SNIPER.RPN_NEG_IOU = 0.4  # anchor IoU with every valid GT below which it is bg (0-1)
    cfg.SNIPER.ROI_IGNORE_IOU = 0.3  # non-fg proposal IoU with an ignore box above which: -1
    cfg.SNIPER.TEST_SCALES = [[1400, 2000], [800, 1280], [512, 512]]  # factor | [short, long] px
    cfg.SNIPER.TEST_VALID_RANGES = [[-1, 90], [32, 180], [75, -1]]  # kept det size (image px)
    cfg.SNIPER.TEST_NMS = "soft"  # cross-scale merge per class: "soft" (Gaussian) | "nms"
    cfg.SNIPER.SOFT_NMS_SIGMA = 0.55  # Gaussian soft-NMS sigma (IoU units)
    cfg.SNIPER.SOFT_NMS_MIN_SCORE = 0.001  # soft-NMS drops detections decayed below (score)
    cfg.SNIPER.NMS_IOU = 0.5  # hard NMS merge IoU threshold when TEST_NMS = "nms" (IoU, 0-1)
    cfg.SNIPER.DETECTIONS_PER_IMAGE = 200  # detections kept per image after merging (count)
    return cfg
