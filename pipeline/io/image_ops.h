/* Small image operations the sources share: channel conversion and centre
 * padding or cropping. Images are channel-major (C, H, W) floats. */
#ifndef SEMREP_IO_IMAGE_OPS_H
#define SEMREP_IO_IMAGE_OPS_H

/* BT.601 luma, 0.299 R + 0.587 G + 0.114 B, in double so that grey
 * (r = g = b) stays exactly grey. */
float sr_luma(float r, float g, float b);

/* out (cout x hw) from in (cin x hw): same count copies; 1 -> 3 replicates
 * grey; 3 -> 1 is luma 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601); a fourth
 * (alpha) channel is dropped. */
void sr_image_channels(const float *in, int cin, int hw, int cout, float *out);

/* out (c x size x size) from in (c x h x w): each side centred, padded with
 * zeros when shorter (28 -> 32: 2 pixels each side) and cropped when longer. */
void sr_image_pad_or_crop(const float *in, int c, int h, int w, int size, float *out);

#endif
