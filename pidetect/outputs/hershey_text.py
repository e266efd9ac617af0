"""The overlay's text, drawn from the Hershey Simplex font's strokes with OpenCV's line drawing.

Why not cv2.putText: OpenCV 5 draws its Hershey fonts through a new TrueType renderer that costs every thread
that writes text about 6 MB of private memory, plus 2.7 MB of the library's font pages (measured: VmRSS before
and after one putText), 9 MB of a daemon held to 135 MB with everything on. Drawing the same font's strokes
(public-domain data by A. V. Hershey, in the JHF encoding of the Hershey-Fonts collection: "rowmans", Roman
Simplex, the glyphs cv2.FONT_HERSHEY_SIMPLEX draws) with `cv2.polylines` costs nothing extra, and
looks the same under OpenCV 4 and 5. Sizes and placement follow OpenCV 4's putText and getTextSize: a glyph
unit is `scale` pixels, the baseline is at y = 9 in the glyph's units and the capitals reach y = -12.

Each text is drawn once into its own small mask, then blended into the picture row by row, so a text drawn
band by band (the framebuffer) gives the same pixels as drawn whole.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Tuple

import cv2
import numpy as np

BASE_LINE = 9  # the glyphs' baseline, in glyph units (y grows downwards)
CAP_LINE = 12  # the capitals' height above the baseline
SHIFT = 8  # fractional bits of the points given to cv2.polylines
MASK_CACHE = 128  # texts kept drawn (labels, zone names, the status line's recent values)

# ASCII 32 (' ') to 126 ('~'): two letters for the glyph's left and right edge, then points as letter pairs
# (x, y), each letter's distance from 'R'; " R" lifts the pen.
SIMPLEX = (
    'JZ',  # ' '
    'MWRFRT RRYQZR[SZRY',  # '!'
    'JZNFNM RVFVM',  # '"'
    'H]SBLb RYBRb RLOZO RKUYU',  # '#'
    'H\\PBP_ RTBT_ RYIWGTFPFMGKIKKLMMNOOUQWRXSYUYXWZT[P[MZKX',  # '$'
    'F^[FI[ RNFPHPJOLMMKMIKIIJGLFNFPGSHVHYG[F RWTUUTWTYV[X[ZZ[X[VYTWT',  # '%'
    'E_\\O\\N[MZMYNXPVUTXRZP[L[JZIYHWHUISJRQNRMSKSIRGPFNGMIMKNNPQUXWZY[[[\\Z\\Y',  # '&'
    'MWRHQGRFSGSIRKQL',  # "'"
    'KYVBTDRGPKOPOTPYR]T`Vb',  # '('
    'KYNBPDRGTKUPUTTYR]P`Nb',  # ')'
    'JZRFRR RMIWO RWIMO',  # '*'
    'E_RIR[ RIR[R',  # '+'
    'MWSZR[QZRYSZS\\R^Q_',  # ','
    'E_IR[R',  # '-'
    'MWRYQZR[SZRY',  # '.'
    'G][BIb',  # '/'
    'H\\QFNGLJKOKRLWNZQ[S[VZXWYRYOXJVGSFQF',  # '0'
    'H\\NJPISFS[',  # '1'
    'H\\LKLJMHNGPFTFVGWHXJXLWNUQK[Y[',  # '2'
    'H\\MFXFRNUNWOXPYSYUXXVZS[P[MZLYKW',  # '3'
    'H\\UFKTZT RUFU[',  # '4'
    'H\\WFMFLOMNPMSMVNXPYSYUXXVZS[P[MZLYKW',  # '5'
    'H\\XIWGTFRFOGMJLOLTMXOZR[S[VZXXYUYTXQVOSNRNOOMQLT',  # '6'
    'H\\YFO[ RKFYF',  # '7'
    'H\\PFMGLILKMMONSOVPXRYTYWXYWZT[P[MZLYKWKTLRNPQOUNWMXKXIWGTFPF',  # '8'
    'H\\XMWPURRSQSNRLPKMKLLINGQFRFUGWIXMXRWWUZR[P[MZLX',  # '9'
    'MWRMQNROSNRM RRYQZR[SZRY',  # ':'
    'MWRMQNROSNRM RSZR[QZRYSZS\\R^Q_',  # ';'
    'F^ZIJRZ[',  # '<'
    'E_IO[O RIU[U',  # '='
    'F^JIZRJ[',  # '>'
    'I[LKLJMHNGPFTFVGWHXJXLWNVORQRT RRYQZR[SZRY',  # '?'
    'E`WNVLTKQKOLNMMPMSNUPVSVUUVS RQKOMNPNSOUPV RWKVSVUXVZV\\T]Q]O\\L[JYHWGTFQFNGLHJJILHOHRIUJWLYNZQ[T[WZYYZX RXKWSWUXV',  # '@'
    'I[RFJ[ RRFZ[ RMTWT',  # 'A'
    'G\\KFK[ RKFTFWGXHYJYLXNWOTP RKPTPWQXRYTYWXYWZT[K[',  # 'B'
    'H]ZKYIWGUFQFOGMILKKNKSLVMXOZQ[U[WZYXZV',  # 'C'
    'G\\KFK[ RKFRFUGWIXKYNYSXVWXUZR[K[',  # 'D'
    'H[LFL[ RLFYF RLPTP RL[Y[',  # 'E'
    'HZLFL[ RLFYF RLPTP',  # 'F'
    'H]ZKYIWGUFQFOGMILKKNKSLVMXOZQ[U[WZYXZVZS RUSZS',  # 'G'
    'G]KFK[ RYFY[ RKPYP',  # 'H'
    'NVRFR[',  # 'I'
    'JZVFVVUYTZR[P[NZMYLVLT',  # 'J'
    'G\\KFK[ RYFKT RPOY[',  # 'K'
    'HYLFL[ RL[X[',  # 'L'
    'F^JFJ[ RJFR[ RZFR[ RZFZ[',  # 'M'
    'G]KFK[ RKFY[ RYFY[',  # 'N'
    'G]PFNGLIKKJNJSKVLXNZP[T[VZXXYVZSZNYKXIVGTFPF',  # 'O'
    'G\\KFK[ RKFTFWGXHYJYMXOWPTQKQ',  # 'P'
    'G]PFNGLIKKJNJSKVLXNZP[T[VZXXYVZSZNYKXIVGTFPF RSWY]',  # 'Q'
    'G\\KFK[ RKFTFWGXHYJYLXNWOTPKP RRPY[',  # 'R'
    'H\\YIWGTFPFMGKIKKLMMNOOUQWRXSYUYXWZT[P[MZKX',  # 'S'
    'JZRFR[ RKFYF',  # 'T'
    'G]KFKULXNZQ[S[VZXXYUYF',  # 'U'
    'I[JFR[ RZFR[',  # 'V'
    'F^HFM[ RRFM[ RRFW[ R\\FW[',  # 'W'
    'H\\KFY[ RYFK[',  # 'X'
    'I[JFRPR[ RZFRP',  # 'Y'
    'H\\YFK[ RKFYF RK[Y[',  # 'Z'
    'KYOBOb RPBPb ROBVB RObVb',  # '['
    'KYKFY^',  # '\\'
    'KYTBTb RUBUb RNBUB RNbUb',  # ']'
    'JZPLRITL RMORJWO RRJR[',  # '^'
    'JZJ]Z]',  # '_'
    'MWSFRGQIQKRLSKRJ',  # '`'
    'I\\XMX[ RXPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 'a'
    'H[LFL[ RLPNNPMSMUNWPXSXUWXUZS[P[NZLX',  # 'b'
    'I[XPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 'c'
    'I\\XFX[ RXPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 'd'
    'I[LSXSXQWOVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 'e'
    'MYWFUFSGRJR[ ROMVM',  # 'f'
    'I\\XMX]W`VaTbQbOa RXPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 'g'
    'I\\MFM[ RMQPNRMUMWNXQX[',  # 'h'
    'NVQFRGSFREQF RRMR[',  # 'i'
    'MWRFSGTFSERF RSMS^RaPbNb',  # 'j'
    'IZMFM[ RWMMW RQSX[',  # 'k'
    'NVRFR[',  # 'l'
    'CaGMG[ RGQJNLMOMQNRQR[ RRQUNWMZM\\N]Q][',  # 'm'
    'I\\MMM[ RMQPNRMUMWNXQX[',  # 'n'
    'I\\QMONMPLSLUMXOZQ[T[VZXXYUYSXPVNTMQM',  # 'o'
    'H[LMLb RLPNNPMSMUNWPXSXUWXUZS[P[NZLX',  # 'p'
    'I\\XMXb RXPVNTMQMONMPLSLUMXOZQ[T[VZXX',  # 'q'
    'KXOMO[ ROSPPRNTMWM',  # 'r'
    'J[XPWNTMQMNNMPNRPSUTWUXWXXWZT[Q[NZMX',  # 's'
    'MYRFRWSZU[W[ ROMVM',  # 't'
    'I\\MMMWNZP[S[UZXW RXMX[',  # 'u'
    'JZLMR[ RXMR[',  # 'v'
    'G]JMN[ RRMN[ RRMV[ RZMV[',  # 'w'
    'J[MMX[ RXMM[',  # 'x'
    'JZLMR[ RXMR[P_NaLbKb',  # 'y'
    'J[XMM[ RMMXM RM[X[',  # 'z'
    'KYTBRCQDPFPHQJRKSMSOQQ RRCQEQGRISJTLTNSPORSTTVTXSZR[Q]Q_Ra RQSSUSWRYQZP\\P^Q`RaTb',  # '{'
    'NVRBRb',  # '|'
    'KYPBRCSDTFTHSJRKQMQOSQ RRCSESGRIQJPLPNQPURQTPVPXQZR[S]S_Ra RSSQUQWRYSZT\\T^S`RaPb',  # '}'
    'F^IUISJPLONOPPTSVTXTZS[Q RISJQLPNPPQTTVUXUZT[Q[O',  # '~'
)


def _parse(data: str) -> Tuple[int, int, Tuple[Tuple[Tuple[int, int], ...], ...]]:
    left, right = ord(data[0]) - 82, ord(data[1]) - 82
    strokes, stroke = [], []
    for k in range(2, len(data), 2):
        pair = data[k:k + 2]
        if pair == " R":
            strokes.append(tuple(stroke))
            stroke = []
        else:
            stroke.append((ord(pair[0]) - 82, ord(pair[1]) - 82))
    strokes.append(tuple(stroke))
    return left, right, tuple(s for s in strokes if len(s) > 1)


GLYPHS = tuple(_parse(data) for data in SIMPLEX)
HIGHEST = min(y for _l, _r, strokes in GLYPHS for stroke in strokes for _x, y in stroke)  # -16: brackets
LOWEST = max(y for _l, _r, strokes in GLYPHS for stroke in strokes for _x, y in stroke)  # 16: descenders


def _glyph(char: str):
    """A character the font has, else '?' (as OpenCV draws what its Hershey fonts lack)."""
    code = ord(char)
    return GLYPHS[code - 32] if 32 <= code <= 126 else GLYPHS[ord("?") - 32]


def text_size(text: str, scale: float, thickness: int) -> Tuple[Tuple[int, int], int]:
    """((width, height), baseline) in pixels, as cv2.getTextSize gives them for FONT_HERSHEY_SIMPLEX."""
    advance = sum(right - left for left, right, _strokes in map(_glyph, text)) * scale
    height = round((CAP_LINE + BASE_LINE) * scale + (thickness + 1) // 2)
    return (round(advance + thickness), height), round(BASE_LINE * scale + thickness * 0.5)


def text_rows(baseline_y: int, scale: float, thickness: int) -> Tuple[int, int]:
    """The rows any text at this size may touch: [first, last)."""
    reach = thickness + 3
    return (baseline_y + math.floor((HIGHEST - BASE_LINE) * scale) - reach,
            baseline_y + math.ceil((LOWEST - BASE_LINE) * scale) + reach + 1)


class TextPainter:
    """Draws texts in one colour each onto BGR pictures; keeps the last MASK_CACHE texts' masks."""

    def __init__(self) -> None:
        self._masks: "OrderedDict[tuple, Tuple[int, int, np.ndarray]]" = OrderedDict()

    def mask(self, text: str, scale: float, thickness: int) -> Tuple[int, int, np.ndarray]:
        """(left, top, coverage 0-255) of `text` written at origin (0, 0), its baseline's left end."""
        key = (text, scale, thickness)
        cached = self._masks.get(key)
        if cached is not None:
            self._masks.move_to_end(key)
            return cached
        lines: List[np.ndarray] = []
        pen = 0.0
        for left, right, strokes in map(_glyph, text):
            pen -= left * scale
            for stroke in strokes:
                lines.append(np.array([(pen + x * scale, (y - BASE_LINE) * scale) for x, y in stroke]))
            pen += right * scale
        reach = thickness + 2
        if lines:
            every = np.concatenate(lines)
            left, top = int(np.floor(every[:, 0].min())) - reach, int(np.floor(every[:, 1].min())) - reach
            width = int(np.ceil(every[:, 0].max())) - left + reach + 1
            height = int(np.ceil(every[:, 1].max())) - top + reach + 1
        else:  # only spaces
            left, top, width, height = 0, 0, 1, 1
        coverage = np.zeros((height, width), np.uint8)
        if lines:
            points = [np.round((line - (left, top)) * (1 << SHIFT)).astype(np.int32) for line in lines]
            cv2.polylines(coverage, points, False, 255, thickness, cv2.LINE_AA, SHIFT)
        self._masks[key] = (left, top, coverage)
        if len(self._masks) > MASK_CACHE:
            self._masks.popitem(last=False)
        return left, top, coverage

    def draw(self, canvas: np.ndarray, text: str, origin: Tuple[int, int], scale: float,
             colour: Tuple[int, int, int], thickness: int, top: int = 0) -> None:
        """Blend `text` into `canvas`, which holds the picture's rows from `top` on; `origin` in the picture."""
        left, rise, coverage = self.mask(text, scale, thickness)
        x0, y0 = origin[0] + left, origin[1] + rise - top
        height, width = coverage.shape
        cx0, cy0 = max(0, x0), max(0, y0)
        cx1, cy1 = min(canvas.shape[1], x0 + width), min(canvas.shape[0], y0 + height)
        if cx0 >= cx1 or cy0 >= cy1:
            return
        alpha = coverage[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None].astype(np.float32) * (1.0 / 255.0)
        region = canvas[cy0:cy1, cx0:cx1]
        blended = region + (np.asarray(colour, np.float32) - region) * alpha
        region[:] = np.round(blended).astype(np.uint8)
