"""Panoptic-DeepLab as modular output mathematics: the blocks of the ModulOM paper's Figure 7.

``PanopticVariables`` (task variables) -> ``PanDLGroundTruth`` (targets) and ``PanDLPrediction`` (decoding) ->
``PanDLLosses`` -> ``PanopticDeepLab`` (registered as ``panoptic-deeplab``).

Conventions: N images of H x W pixels; panoptic ids use the train-id encoding of ``DatasetMetadata``
(``class * label_divisor + instance``, crowd = thing class with instance 0, void = ``ignore_label * label_divisor``).
Per-segment quantities are dense tables indexed by panoptic id: ``L = num_classes * label_divisor + 1`` entries per
image, the last one standing for void, so that no instance list (and no host synchronisation) is needed; per-pixel
masks, classes and weights are one gather from such a table. Coordinates are (y, x) in pixels.

Everything is vectorized over pixels, segments and classes; loops run over the images of the batch only in decoding,
whose sizes are data-dependent. The targets are bit-identical to ``PanopticTargetGenerator`` given the segments of
the panoptic map: one segment per distinct id. In PAN_ONLY training batches the loader numbers crowd segments like
instances and marks them in ``crowd_table``, so several crowd segments of one class (COCO) stay distinct.
"""
import torch

from ....data.transforms.target_transforms import draw_center_heatmap
from ...post_processing import (
    find_instance_center,
    first_max_index,
    group_pixels,
    instance_classes,
    merge_semantic_and_instance,
)
from ...post_processing.static import static_panoptic
from ..build import register_om
from ..core import OutputMath, no_cache, role


class PanopticVariables(OutputMath):
    """Task variables: shared by every panoptic formulation, whatever the dataset (green block of Figure 7)."""

    # the names before version 0.2 (configs and docs may still use them)
    OM_ALIASES = {"semantic_weights": "semantic_weights_truth", "center_weights": "center_weights_truth",
                  "offset_weights": "offset_weights_truth", "closest_truth_centroid": "closest_centroid_truth"}

    def panoptic_truth(self):
        """[N, H, W] long: ground-truth panoptic ids (train-id encoding, see module docstring)."""
        return self.raw_batch["panoptic_truth"].to(self.device).long()

    @role("intermediate")
    def thing_class_table(self):
        """[ignore_label + 1] bool: entry c is True iff train id c is a thing class (from the dataset metadata)."""
        return self.metadata.is_thing_table(self.device)

    @role("intermediate")
    def segment_table_size(self):
        """int: L, the entries of a per-image segment table: the panoptic ids of num_classes classes, then void."""
        return self.metadata.num_classes * self.metadata.label_divisor + 1

    def segment_entry_truth(self):
        """[N, H, W] long: index of each pixel's segment in its image's per-segment table of L entries (void, and
        any id outside the classes, share the last entry)."""
        # void (ignore_label * label_divisor) is above every class id
        return self.panoptic_truth().clamp(0, self.segment_table_size() - 1)

    def segment_index_truth(self):
        """[N, H, W] long: index of each pixel's segment in the flattened [N * L] per-segment tables
        (segment_entry_truth of image n plus n * L)."""
        entry = self.segment_entry_truth()
        return entry + torch.arange(entry.shape[0], device=self.device).view(-1, 1, 1) * self.segment_table_size()

    @role("intermediate")
    def segment_class_table(self):
        """[L] long: train id of every table entry (ignore_label for the void entry)."""
        m = self.metadata
        # no integer division of an arange: inductor (torch 2.13, CPU) got the odd last element of that wrong
        classes = torch.arange(m.num_classes, device=self.device).repeat_interleave(m.label_divisor)
        return torch.cat([classes, classes.new_full((1,), m.ignore_label)])

    @role("intermediate")
    def segment_is_thing(self):
        """[L] bool: the table entry is a thing segment (crowd included, void excluded)."""
        return self.thing_class_table()[self.segment_class_table()]

    @role("intermediate")
    def segment_is_crowd(self):
        """[L] bool, or [N, L] when the batch has a crowd table: the entry is a crowd segment (thing class with
        instance 0, or an id the loader's ``crowd_table`` marks: PAN_ONLY training batches number crowd segments
        like instances so that several crowd segments of one class stay distinct)."""
        m = self.metadata
        first = torch.arange(m.label_divisor, device=self.device).repeat(m.num_classes) == 0  # instance number 0
        crowd = self.segment_is_thing() & torch.cat([first, first.new_zeros(1)])
        table = self.raw_batch.get("crowd_table_truth")
        return crowd if table is None else crowd | table.to(self.device, torch.bool)

    @role("intermediate")
    def segment_is_void(self):
        """[L] bool: the table entry is void (the last one, which every id outside the classes shares)."""
        ids = torch.arange(self.segment_table_size(), device=self.device)
        return ids == ids.numel() - 1

    def _gather_segments(self, table):
        """Per-pixel values [N, H, W] of a per-entry table, [L] (the same for every image) or [N, L]: one gather."""
        idx = self.segment_index_truth()
        flat = table.repeat(idx.shape[0]) if table.dim() == 1 else table.reshape(-1)
        return flat.index_select(0, idx.reshape(-1)).view(idx.shape)

    def class_truth(self):
        """[N, H, W] long: train id of each pixel's segment (ignore_label on void; crowd keeps its class)."""
        return self._gather_segments(self.segment_class_table())

    def thing_mask_truth(self):
        """[N, H, W] bool: pixels of thing classes, crowd included."""
        return self._gather_segments(self.segment_is_thing())

    def crowd_mask_truth(self):
        """[N, H, W] bool: crowd pixels (thing class, instance 0)."""
        return self._gather_segments(self.segment_is_crowd())

    def void_mask_truth(self):
        """[N, H, W] bool: void pixels (unlabelled, padding, or an id outside the classes)."""
        return self._gather_segments(self.segment_is_void())

    def semantic_truth(self):
        """[N, H, W] long: semantic train ids, ignore_label on void (and on crowd with IGNORE_CROWD_IN_SEMANTIC)."""
        sem = self.class_truth()
        if self.config.DATASET.IGNORE_CROWD_IN_SEMANTIC:
            sem = torch.where(self.crowd_mask_truth(), self.metadata.ignore_label, sem)
        return sem

    def instance_truth(self):
        """[N, H, W] long: panoptic id on pixels of non-crowd thing instances, -1 elsewhere."""
        keep = self._gather_segments(self.segment_is_thing() & ~self.segment_is_crowd())
        return torch.where(keep, self.panoptic_truth(), -1)

    def panoptic_pred(self):
        """[N, H, W] long: predicted panoptic ids (train-id encoding); defined by the formulation's decoding."""
        raise NotImplementedError(f"{type(self).__name__} defines no decoding (panoptic_pred).")


class PanDLGroundTruth(PanopticVariables):
    """Panoptic-DeepLab targets, computed on the model's device (blue block "Groundtruth" of Figure 7)."""

    def _segment_sums(self, plane):
        """[N * L] long: for every entry of the flattened segment tables, the sum of ``plane`` ([H, W] integers, the
        same for every image) over the entry's pixels: one scatter_add_ into the [N, L] tables from the plane
        expanded over the images (not copied); static shapes, no host synchronisation on any device."""
        entry = self.segment_entry_truth()
        n = entry.shape[0]
        sums = torch.zeros(n, self.segment_table_size(), dtype=torch.long, device=self.device)
        return sums.scatter_add_(1, entry.reshape(n, -1), plane.reshape(1, -1).expand(n, -1)).view(-1)

    def segment_area_truth(self):
        """[N, L] long: number of pixels of every panoptic id in every image (0 when absent)."""
        h, w = self.panoptic_truth().shape[-2:]
        ones = torch.ones((), dtype=torch.long, device=self.device).expand(h, w)
        return self._segment_sums(ones).view(-1, self.segment_table_size())

    def centroids_truth(self):
        """[N, L, 2] float64: (y, x) centre of mass of every segment in pixels (0 for absent ids; L: see
        segment_table_size)."""
        n, h, w = self.panoptic_truth().shape
        ys = torch.arange(h, device=self.device).view(h, 1)
        xs = torch.arange(w, device=self.device)
        # exact integer coordinate sums; both packed into one int64 as y * 2^shift + x when they fit (the x sums
        # never carry into the y part), else one sum per coordinate
        shift = (h * w * max(w - 1, 1)).bit_length()
        if (h * w * max(h - 1, 1)) << shift < 2 ** 63:
            packed = self._segment_sums((ys << shift) + xs)
            sums = [packed >> shift, packed & ((1 << shift) - 1)]
        else:
            sums = [self._segment_sums(ys.expand(h, w)), self._segment_sums(xs.expand(h, w))]
        # integer sums in float64 divided by the area: numpy's mean of the coordinates, bit for bit
        area = self.segment_area_truth().reshape(-1, 1).clamp(min=1)
        return (torch.stack(sums, dim=-1).to(torch.float64) / area).view(n, -1, 2)

    def thing_segments_truth(self):
        """[N, K] long: panoptic ids of the thing segments present in each image (crowd included), -1 as padding;
        K is the largest count on CPU, OM.MAX_INSTANCES on other devices and when compiled (checked there without
        synchronisation)."""
        present = (self.segment_area_truth() > 0) & self.segment_is_thing()
        # reading the count costs no synchronisation on the CPU; compiled code keeps static shapes (the bound)
        if present.device.type == "cpu" and not torch.compiler.is_compiling():
            k = max(1, int(present.sum(1).max()))
        else:
            k = min(self.config.OM.MAX_INSTANCES, present.shape[1])
            torch._assert_async(present.sum(1).max() <= k, "More thing segments in an image than OM.MAX_INSTANCES.")
        score, ids = torch.topk(present.to(torch.uint8), k, dim=1)
        return torch.where(score > 0, ids, -1)

    def instance_centroids_truth(self):
        """[N, K, 2] float: (y, x) centroid of each segment of thing_segments_truth (rows of padding: arbitrary)."""
        seg = self.thing_segments_truth()
        return self.centroids_truth().gather(1, seg.clamp(min=0)[..., None].expand(-1, -1, 2))

    def center_truth(self):
        """[N, 1, H, W] float32: max of Gaussians (std DATASET.GAUSSIAN_SIGMA px, 6*sigma+3 window) placed at the
        truncated centroid of every thing segment."""
        cen = self.instance_centroids_truth()
        h, w = self.panoptic_truth().shape[-2:]
        return draw_center_heatmap(cen[..., 0], cen[..., 1], h, w, self.config.DATASET.GAUSSIAN_SIGMA,
                                   valid=self.thing_segments_truth() >= 0)

    def offset_truth(self):
        """[N, 2, H, W] float32: (y, x) vector in pixels from each thing pixel to its segment's centroid, 0 on
        other pixels: the float64 difference rounded once to float32, the original's values bit for bit."""
        idx = self.segment_index_truth()
        n, h, w = idx.shape
        k = self.thing_segments_truth().shape[1]
        rows = self.thing_segment_rows().index_select(0, idx.reshape(-1)).view(n, h, w)  # 0: not a thing pixel
        # exact per-(segment, row) and per-(segment, column) tables (small, float64 rounded once to float32), then
        # one float32 gather for both channels: no per-pixel float64 arithmetic
        cen = self.instance_centroids_truth().reshape(n * k, 2, 1)
        ys = torch.arange(h, device=self.device, dtype=cen.dtype)
        xs = torch.arange(w, device=self.device, dtype=cen.dtype)
        table_y = torch.cat([ys.new_zeros(1, h), cen[:, 0] - ys]).to(torch.float32).view(-1)
        table_x = torch.cat([xs.new_zeros(1, w), cen[:, 1] - xs]).to(torch.float32).view(-1)
        index = torch.empty(2, n, h, w, dtype=torch.int32, device=self.device)  # row * h + y, then row * w + x
        torch.add(torch.arange(h, device=self.device, dtype=torch.int32).view(1, h, 1), rows, alpha=h, out=index[0])
        torch.add(torch.arange(w, device=self.device, dtype=torch.int32) + table_y.numel(), rows, alpha=w,
                  out=index[1])
        table = torch.cat([table_y, table_x])
        return table.index_select(0, index.view(-1)).view(2, n, h, w).transpose(0, 1)

    @role("intermediate")
    def thing_segment_rows(self):
        """[N * L] int32: 1 + n * K + k for the k-th thing segment of image n (thing_segments_truth), 0 for every
        other entry of the flattened segment tables: the row of a segment in per-thing-segment tables."""
        seg = self.thing_segments_truth()
        n, k = seg.shape
        size = self.segment_table_size()
        entry = torch.where(seg >= 0, seg + torch.arange(n, device=self.device).view(-1, 1) * size, n * size)
        rows = torch.zeros(n * size + 1, dtype=torch.int32, device=self.device)  # the last entry absorbs padding
        rows.scatter_(0, entry.reshape(-1), torch.arange(1, n * k + 1, dtype=torch.int32, device=self.device))
        return rows[:-1]

    def semantic_weights_truth(self):
        """[N, H, W] float32: semantic-loss weight, DATASET.SMALL_INSTANCE_WEIGHT on thing segments smaller than
        DATASET.SMALL_INSTANCE_AREA pixels, 1 elsewhere."""
        d = self.config.DATASET
        idx = self.segment_index_truth()
        small = self.segment_is_thing() & (self.segment_area_truth() < d.SMALL_INSTANCE_AREA)  # [N, L]
        table = torch.where(small, float(d.SMALL_INSTANCE_WEIGHT), 1.0).reshape(-1)
        return table.index_select(0, idx.reshape(-1)).view(idx.shape)

    def center_weights_truth(self):
        """[N, H, W] float32: 1 on labelled non-crowd pixels, 0 on void and crowd."""
        return self._gather_segments((~self.segment_is_void() & ~self.segment_is_crowd()).float())

    def offset_weights_truth(self):
        """[N, H, W] float32: 1 on non-crowd thing pixels (all labelled non-crowd pixels without
        DATASET.IGNORE_STUFF_IN_OFFSET), 0 elsewhere."""
        keep = ~self.segment_is_crowd()
        if self.config.DATASET.IGNORE_STUFF_IN_OFFSET:
            keep = keep & self.segment_is_thing()
        else:
            keep = keep & ~self.segment_is_void()
        return self._gather_segments(keep.float())


class PanDLPrediction(PanopticVariables):
    """Panoptic-DeepLab decoding (blue block "Prediction" of Figure 7), through the pure functions of
    ``segmentation.model.post_processing``: one implementation for the OM and for export."""

    def semantic_logits_pred(self):
        """[N, C, H, W] float: semantic logits (network output); the paper's semantic_pred('logits')."""
        return self.raw_batch["semantic_pred"]

    def semantic_prob_pred(self):
        """[N, C, H, W] float: class probabilities (softmax of the logits); the paper's semantic_pred('softmax')."""
        return torch.softmax(self.semantic_logits_pred(), dim=1)

    def semantic_pred(self):
        """[N, H, W] long: predicted train id (first maximum of the logits); the paper's semantic_pred('argmax')."""
        return first_max_index(self.semantic_logits_pred(), 1)

    def thing_mask_pred(self):
        """[N, H, W] bool: pixels predicted as a thing class."""
        return self.thing_class_table()[self.semantic_pred()]

    def center_pred(self):
        """[N, 1, H, W] float: predicted centre heatmap (network output)."""
        return self.raw_batch["center_pred"]

    def offset_pred(self):
        """[N, 2, H, W] float: predicted (y, x) offsets in pixels from each pixel to its instance centre."""
        return self.raw_batch["offset_pred"]

    def votes_pred(self):
        """[N, 2, H, W] float: absolute (y, x) position each pixel votes for: its coordinates plus its offset."""
        h, w = self.offset_pred().shape[-2:]
        ys = torch.arange(h, device=self.device, dtype=self.offset_pred().dtype)
        xs = torch.arange(w, device=self.device, dtype=self.offset_pred().dtype)
        return torch.stack(torch.meshgrid(ys, xs, indexing="ij")) + self.offset_pred()

    def centroids_pred(self):
        """list of N long tensors [K_n, 2]: (y, x) centres after threshold, NMS and the strict top-k rule
        (POST_PROCESSING.CENTER_THRESHOLD, NMS_KERNEL, TOP_K_INSTANCE)."""
        pp = self.config.POST_PROCESSING
        heat = self.center_pred().detach()
        return [find_instance_center(heat[i:i + 1], pp.CENTER_THRESHOLD, pp.NMS_KERNEL, pp.TOP_K_INSTANCE)
                for i in range(heat.shape[0])]

    def instance_pred(self):
        """[N, H, W] long: 1 + index of the nearest predicted centre of each predicted-thing pixel's vote, 0
        elsewhere (and on images without centres)."""
        offsets = self.offset_pred().detach()
        things = self.thing_mask_pred()
        out = torch.zeros_like(self.semantic_pred())
        for i, ctr in enumerate(self.centroids_pred()):
            if ctr.shape[0]:
                out[i] = group_pixels(ctr, offsets[i:i + 1], mask=things[i])[0]
        return out

    def instance_class_pred(self):
        """list of N long tensors [K_n]: majority predicted class of instances 1..K_n (-1 for an instance without
        predicted-thing pixels); the paper's ins_class_pred."""
        sem, ins, things = self.semantic_pred(), self.instance_pred(), self.thing_mask_pred()
        out = []
        for i, ctr in enumerate(self.centroids_pred()):
            classes, present = instance_classes(sem[i], ins[i], things[i], self.metadata.num_classes)
            classes = torch.where(present, classes, -1)[1:]
            out.append(torch.cat([classes, classes.new_full((ctr.shape[0] - classes.numel(),), -1)]))
        return out

    def panoptic_pred(self):
        """[N, H, W] long: predicted panoptic ids: instances take their majority class and are numbered per class,
        stuff below POST_PROCESSING.STUFF_AREA pixels is void. Under torch.compile: the static-shape decoding of
        the export (from semantic_logits_pred, center_pred and offset_pred), equal to this one with the strict
        top-k rule at POST_PROCESSING.TOP_K_INSTANCE (OM.MAX_INSTANCES when unset)."""
        m = self.metadata
        if torch.compiler.is_compiling():
            pp = self.config.POST_PROCESSING
            logits, heat, offsets = (self.semantic_logits_pred(), self.center_pred().detach(),
                                     self.offset_pred().detach())
            things = self.thing_class_table()[:m.num_classes]
            return torch.stack([static_panoptic(logits[i], heat[i, 0], offsets[i], things, m.label_divisor,
                                                pp.STUFF_AREA, m.void_label, pp.CENTER_THRESHOLD, pp.NMS_KERNEL,
                                                pp.TOP_K_INSTANCE or self.config.OM.MAX_INSTANCES)
                                for i in range(logits.shape[0])])
        sem, ins, things = self.semantic_pred(), self.instance_pred(), self.thing_mask_pred()
        return torch.cat([merge_semantic_and_instance(sem[i:i + 1], ins[i:i + 1], things[i:i + 1], m.label_divisor,
                                                      m.thing_ids, self.config.POST_PROCESSING.STUFF_AREA,
                                                      m.void_label) for i in range(sem.shape[0])])


class PanDLLosses(PanDLPrediction, PanDLGroundTruth):
    """Panoptic-DeepLab losses (blue block "Losses" of Figure 7), through the configured loss modules."""

    def semantic_loss(self):
        """Scalar: semantic loss (LOSS.SEMANTIC.NAME) of the logits against semantic_truth, pixel-weighted."""
        return self.losses["semantic"](self.semantic_logits_pred(), self.semantic_truth(),
                                       self.semantic_weights_truth())

    def center_loss(self):
        """Scalar: squared error of the heatmap, averaged with center_weights_truth (LOSS.CENTER.NAME)."""
        return self.losses["center"](self.center_pred(), self.center_truth(), self.center_weights_truth())

    def offset_loss(self):
        """Scalar: absolute error of the offsets in pixels, averaged with offset_weights_truth (LOSS.OFFSET.NAME)."""
        return self.losses["offset"](self.offset_pred(), self.offset_truth(), self.offset_weights_truth())

    def loss(self):
        """Scalar: LOSS.SEMANTIC.WEIGHT * semantic + LOSS.CENTER.WEIGHT * centre + LOSS.OFFSET.WEIGHT * offset."""
        w = self.config.LOSS
        return (w.SEMANTIC.WEIGHT * self.semantic_loss() + w.CENTER.WEIGHT * self.center_loss()
                + w.OFFSET.WEIGHT * self.offset_loss())

    @no_cache
    def logged_losses(self):
        """Dict of the unweighted loss components and the total, for logging."""
        return {"semantic_loss": self.semantic_loss(), "center_loss": self.center_loss(),
                "offset_loss": self.offset_loss(), "loss": self.loss()}


@register_om("panoptic-deeplab", "base")
class PanopticDeepLab(PanDLLosses):
    """Panoptic-DeepLab: semantic logits, a centre heatmap and centre offsets, merged into a panoptic map."""
