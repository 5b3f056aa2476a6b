"""medcalc-synth: a generated medical-calculation SFT dataset (the offline default domain).

Each example is a short patient note that mentions the inputs of one clinical calculator in
mixed units (lb or kg, inches or cm, mg/dL or mmol/L, ...) plus a few irrelevant vital signs,
a question naming the calculator, a step-by-step explanation that converts units and applies the
formula, and the numeric answer with a tolerance range (±5 % for continuous results, as in
MedCalc-Bench; exact for integer counts). Generation is deterministic given the seed.

Twelve calculators: BMI, Cockcroft-Gault creatinine clearance, mean arterial pressure, anion gap,
calcium corrected for albumin, QTc (Bazett), LDL (Friedewald), ideal body weight (Devine), free
water deficit, serum osmolality, sodium corrected for hyperglycemia (Katz), body surface area
(Mosteller), and maintenance fluids (4-2-1 rule).

The formulas are the standard textbook ones; this is a teaching dataset, not clinical advice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LB_PER_KG = 2.20462
CM_PER_IN = 2.54
CREAT_UMOL_PER_MGDL = 88.4
CA_MGDL_PER_MMOL = 4.008
CHOL_MGDL_PER_MMOL = 38.67
TG_MGDL_PER_MMOL = 88.57
GLU_MGDL_PER_MMOL = 18.016
BUN_MGDL_PER_UREA_MMOL = 2.8  # BUN (mg/dL) ≈ urea (mmol/L) × 2.8
TOLERANCE = 0.05


@dataclass
class SynthCase:
    calculator: str
    note: str
    question: str
    steps: list[str]
    answer: float
    decimals: int
    exact: bool = False  # integer answers must match exactly

    @property
    def answer_text(self) -> str:
        # str() of the already-rounded float, so the text matches the explanation's last step
        return str(self.answer) if self.decimals > 0 else str(int(round(self.answer)))

    @property
    def bounds(self) -> tuple[float, float]:
        if self.exact:
            return self.answer, self.answer
        lo, hi = self.answer * (1 - TOLERANCE), self.answer * (1 + TOLERANCE)
        return (min(lo, hi), max(lo, hi))


# ------------------------------------------------------------------------------------------
# helpers that draw patient attributes and phrase them in a randomly chosen unit


def _r(x: float, d: int = 3) -> float:
    return float(round(x, d))


def _patient(rng: np.random.Generator, min_age: int = 20, max_age: int = 85) -> tuple[int, str]:
    return int(rng.integers(min_age, max_age + 1)), ("male" if rng.random() < 0.5 else "female")


def _who(age: int, sex: str) -> str:
    return f"A {age}-year-old {'man' if sex == 'male' else 'woman'}"


def _weight(rng, sex: str) -> tuple[float, str, list[str]]:
    kg = float(rng.normal(80 if sex == "male" else 68, 14))
    kg = float(np.clip(kg, 42, 150))
    if rng.random() < 0.5:
        lb = round(kg * LB_PER_KG, 1)
        kg = lb / LB_PER_KG
        return kg, f"{lb} lb", [f"The weight is {lb} lb, which is {lb} / {LB_PER_KG} = {_r(kg)} kg."]
    kg = round(kg, 1)
    return kg, f"{kg} kg", [f"The weight is {kg} kg."]


def _height(rng, sex: str) -> tuple[float, str, list[str]]:
    cm = float(np.clip(rng.normal(176 if sex == "male" else 163, 8), 145, 205))
    u = rng.random()
    if u < 0.35:
        inches = round(cm / CM_PER_IN, 1)
        cm = inches * CM_PER_IN
        return cm, f"{inches} in", [f"The height is {inches} in, which is {inches} × {CM_PER_IN} = {_r(cm)} cm."]
    if u < 0.6:
        total_in = int(round(cm / CM_PER_IN))
        ft, inch = divmod(total_in, 12)
        cm = total_in * CM_PER_IN
        return cm, f"{ft} ft {inch} in", [
            f"The height is {ft} ft {inch} in = {total_in} in, which is {total_in} × {CM_PER_IN} = {_r(cm)} cm."]
    cm = round(cm, 1)
    return cm, f"{cm} cm", [f"The height is {cm} cm."]


def _distractors(rng) -> str:
    hr = int(rng.integers(58, 110))
    temp = round(float(rng.normal(37.0, 0.5)), 1)
    rr = int(rng.integers(12, 24))
    return f"Heart rate {hr} beats/min, temperature {temp} °C, respiratory rate {rr}/min."


_COMPLAINTS = ["presents to the clinic for a routine check-up", "is admitted with fatigue",
               "comes to the emergency department with dizziness", "is seen for follow-up of hypertension",
               "presents with shortness of breath", "is evaluated before elective surgery",
               "presents with nausea and poor appetite", "is admitted after a fall at home"]


def _opening(rng, age: int, sex: str) -> str:
    return f"{_who(age, sex)} {_COMPLAINTS[int(rng.integers(len(_COMPLAINTS)))]}."


# ------------------------------------------------------------------------------------------
# calculators: each returns a SynthCase


def bmi(rng) -> SynthCase:
    age, sex = _patient(rng)
    kg, wtext, wsteps = _weight(rng, sex)
    cm, htext, hsteps = _height(rng, sex)
    m = cm / 100
    value = kg / (m * m)
    note = f"{_opening(rng, age, sex)} Weight {wtext}, height {htext}. {_distractors(rng)}"
    steps = ["BMI = weight (kg) / height (m)^2.", *wsteps, *hsteps,
             f"Height in meters is {_r(cm)} / 100 = {_r(m)} m.",
             f"BMI = {_r(kg)} / ({_r(m)} × {_r(m)}) = {_r(value)} kg/m^2."]
    return SynthCase("Body Mass Index (BMI)", note, "What is the patient's BMI in kg/m^2?", steps, _r(value), 3)


def _creatinine(rng) -> tuple[float, str, list[str]]:
    mgdl = float(np.clip(rng.lognormal(math.log(1.1), 0.35), 0.5, 4.0))
    if rng.random() < 0.5:
        umol = round(mgdl * CREAT_UMOL_PER_MGDL)
        mgdl = umol / CREAT_UMOL_PER_MGDL
        return mgdl, f"{umol} µmol/L", [
            f"Creatinine is {umol} µmol/L, which is {umol} / {CREAT_UMOL_PER_MGDL} = {_r(mgdl)} mg/dL."]
    mgdl = round(mgdl, 2)
    return mgdl, f"{mgdl} mg/dL", [f"Creatinine is {mgdl} mg/dL."]


def cockcroft_gault(rng) -> SynthCase:
    age, sex = _patient(rng, 25, 90)
    kg, wtext, wsteps = _weight(rng, sex)
    scr, ctext, csteps = _creatinine(rng)
    coef = 1.0 if sex == "male" else 0.85
    value = (140 - age) * kg * coef / (72 * scr)
    note = (f"{_opening(rng, age, sex)} Weight {wtext}. {_distractors(rng)} "
            f"Laboratory results: serum creatinine {ctext}.")
    steps = ["Cockcroft-Gault: CrCl = (140 - age) × weight (kg) × sex factor / (72 × creatinine in mg/dL), "
             "with sex factor 1 for men and 0.85 for women.",
             f"The patient is {age} years old and {sex}, so the sex factor is {coef}.", *wsteps, *csteps,
             f"CrCl = (140 - {age}) × {_r(kg)} × {coef} / (72 × {_r(scr)}) = {_r(value)} mL/min."]
    return SynthCase("Creatinine Clearance (Cockcroft-Gault)", note,
                     "What is the patient's creatinine clearance by the Cockcroft-Gault equation in mL/min, "
                     "using actual body weight?", steps, _r(value), 3)


def mean_arterial_pressure(rng) -> SynthCase:
    age, sex = _patient(rng)
    sbp = int(rng.integers(90, 190))
    dbp = int(rng.integers(50, min(120, sbp - 20)))
    value = (2 * dbp + sbp) / 3
    note = f"{_opening(rng, age, sex)} Blood pressure {sbp}/{dbp} mmHg. {_distractors(rng)}"
    steps = ["MAP = (2 × diastolic + systolic) / 3.",
             f"Systolic is {sbp} mmHg and diastolic is {dbp} mmHg.",
             f"MAP = (2 × {dbp} + {sbp}) / 3 = {_r(value)} mmHg."]
    return SynthCase("Mean Arterial Pressure (MAP)", note,
                     "What is the patient's mean arterial pressure in mmHg?", steps, _r(value), 3)


def anion_gap(rng) -> SynthCase:
    age, sex = _patient(rng)
    na = int(rng.integers(128, 150))
    cl = int(rng.integers(92, 112))
    hco3 = int(rng.integers(12, 30))
    unit = "mEq/L" if rng.random() < 0.5 else "mmol/L"
    value = na - (cl + hco3)
    note = (f"{_opening(rng, age, sex)} {_distractors(rng)} Chemistry: sodium {na} {unit}, "
            f"chloride {cl} {unit}, bicarbonate {hco3} {unit}, potassium {round(float(rng.uniform(3.3, 5.2)), 1)} {unit}.")
    steps = ["Anion gap = sodium - (chloride + bicarbonate).",
             f"For monovalent ions 1 mmol/L = 1 mEq/L, so the values are sodium {na}, chloride {cl}, bicarbonate {hco3} mEq/L.",
             f"Anion gap = {na} - ({cl} + {hco3}) = {value} mEq/L."]
    return SynthCase("Anion Gap", note, "What is the patient's anion gap in mEq/L?", steps, float(value), 0, exact=True)


def corrected_calcium(rng) -> SynthCase:
    age, sex = _patient(rng)
    ca = float(rng.uniform(7.0, 10.5))
    alb = float(rng.uniform(1.8, 4.5))
    steps = ["Corrected calcium = measured calcium (mg/dL) + 0.8 × (4 - albumin in g/dL)."]
    if rng.random() < 0.5:
        ca_mmol = round(ca / CA_MGDL_PER_MMOL, 2)
        ca = ca_mmol * CA_MGDL_PER_MMOL
        ca_text = f"{ca_mmol} mmol/L"
        steps.append(f"Calcium is {ca_mmol} mmol/L, which is {ca_mmol} × {CA_MGDL_PER_MMOL} = {_r(ca)} mg/dL.")
    else:
        ca = round(ca, 1)
        ca_text = f"{ca} mg/dL"
        steps.append(f"Calcium is {ca} mg/dL.")
    if rng.random() < 0.5:
        alb_gl = round(alb * 10)
        alb = alb_gl / 10
        alb_text = f"{alb_gl} g/L"
        steps.append(f"Albumin is {alb_gl} g/L, which is {alb_gl} / 10 = {_r(alb)} g/dL.")
    else:
        alb = round(alb, 1)
        alb_text = f"{alb} g/dL"
        steps.append(f"Albumin is {alb} g/dL.")
    value = ca + 0.8 * (4 - alb)
    steps.append(f"Corrected calcium = {_r(ca)} + 0.8 × (4 - {_r(alb)}) = {_r(value)} mg/dL.")
    note = f"{_opening(rng, age, sex)} {_distractors(rng)} Labs: total calcium {ca_text}, albumin {alb_text}."
    return SynthCase("Calcium Correction for Hypoalbuminemia", note,
                     "What is the patient's albumin-corrected calcium in mg/dL?", steps, _r(value), 3)


def qtc_bazett(rng) -> SynthCase:
    age, sex = _patient(rng)
    hr = int(rng.integers(45, 130))
    qt = int(rng.integers(300, 480))
    rr = 60 / hr
    value = qt / math.sqrt(rr)
    note = f"{_opening(rng, age, sex)} An ECG shows sinus rhythm at {hr} beats/min with a QT interval of {qt} ms."
    steps = ["Bazett: QTc = QT / sqrt(RR), with RR in seconds = 60 / heart rate.",
             f"RR = 60 / {hr} = {_r(rr)} s.",
             f"QTc = {qt} / sqrt({_r(rr)}) = {_r(value)} ms."]
    return SynthCase("QTc Bazett", note, "What is the patient's corrected QT interval (Bazett) in ms?",
                     steps, _r(value), 3)


def ldl_friedewald(rng) -> SynthCase:
    age, sex = _patient(rng, 30, 80)
    tc = float(rng.uniform(150, 300))
    hdl = float(rng.uniform(30, 80))
    tg = float(rng.uniform(60, 350))
    steps = ["Friedewald: LDL = total cholesterol - HDL - triglycerides / 5 (all in mg/dL)."]
    if rng.random() < 0.5:
        tc_m, hdl_m, tg_m = round(tc / CHOL_MGDL_PER_MMOL, 2), round(hdl / CHOL_MGDL_PER_MMOL, 2), round(tg / TG_MGDL_PER_MMOL, 2)
        tc, hdl, tg = tc_m * CHOL_MGDL_PER_MMOL, hdl_m * CHOL_MGDL_PER_MMOL, tg_m * TG_MGDL_PER_MMOL
        lipid = f"total cholesterol {tc_m} mmol/L, HDL {hdl_m} mmol/L, triglycerides {tg_m} mmol/L"
        steps += [f"Total cholesterol {tc_m} mmol/L × {CHOL_MGDL_PER_MMOL} = {_r(tc)} mg/dL.",
                  f"HDL {hdl_m} mmol/L × {CHOL_MGDL_PER_MMOL} = {_r(hdl)} mg/dL.",
                  f"Triglycerides {tg_m} mmol/L × {TG_MGDL_PER_MMOL} = {_r(tg)} mg/dL."]
    else:
        tc, hdl, tg = round(tc), round(hdl), round(tg)
        lipid = f"total cholesterol {tc} mg/dL, HDL {hdl} mg/dL, triglycerides {tg} mg/dL"
        steps.append(f"Total cholesterol {tc} mg/dL, HDL {hdl} mg/dL, triglycerides {tg} mg/dL.")
    value = tc - hdl - tg / 5
    steps.append(f"LDL = {_r(tc)} - {_r(hdl)} - {_r(tg)} / 5 = {_r(value)} mg/dL.")
    note = f"{_opening(rng, age, sex)} {_distractors(rng)} Fasting lipid panel: {lipid}."
    return SynthCase("LDL Calculated", note, "What is the patient's calculated LDL cholesterol in mg/dL?",
                     steps, _r(value), 3)


def ideal_body_weight(rng) -> SynthCase:
    age, sex = _patient(rng)
    cm, htext, hsteps = _height(rng, sex)
    inches = cm / CM_PER_IN
    base = 50.0 if sex == "male" else 45.5
    value = base + 2.3 * (inches - 60)
    note = f"{_opening(rng, age, sex)} Height {htext}. {_distractors(rng)}"
    steps = ["Devine: IBW = 50 kg (men) or 45.5 kg (women) + 2.3 kg per inch of height over 60 inches.",
             *hsteps, f"Height in inches is {_r(cm)} / {CM_PER_IN} = {_r(inches)} in.",
             f"The patient is {sex}, so IBW = {base} + 2.3 × ({_r(inches)} - 60) = {_r(value)} kg."]
    return SynthCase("Ideal Body Weight", note, "What is the patient's ideal body weight in kg?",
                     steps, _r(value), 3)


def free_water_deficit(rng) -> SynthCase:
    age, sex = _patient(rng, 20, 90)
    kg, wtext, wsteps = _weight(rng, sex)
    na = int(rng.integers(146, 170))
    elderly = age >= 65
    frac = {("male", False): 0.6, ("female", False): 0.5, ("male", True): 0.5, ("female", True): 0.45}[(sex, elderly)]
    value = frac * kg * (na / 140 - 1)
    note = (f"{_opening(rng, age, sex)} Weight {wtext}. {_distractors(rng)} "
            f"Serum sodium is {na} mmol/L.")
    who = ("elderly " if elderly else "adult ") + sex
    steps = ["Free water deficit = total body water fraction × weight (kg) × (sodium / 140 - 1); the fraction is "
             "0.6 for adult men, 0.5 for adult women and elderly men, 0.45 for elderly women (65 years or older).",
             f"The patient is an {who} ({age} years), so the fraction is {frac}.", *wsteps,
             f"Free water deficit = {frac} × {_r(kg)} × ({na} / 140 - 1) = {_r(value)} L."]
    return SynthCase("Free Water Deficit", note, "What is the patient's free water deficit in liters?",
                     steps, _r(value), 3)


def serum_osmolality(rng) -> SynthCase:
    age, sex = _patient(rng)
    na = int(rng.integers(128, 150))
    glu = float(rng.uniform(70, 450))
    bun = float(rng.uniform(6, 60))
    steps = ["Serum osmolality = 2 × sodium + glucose (mg/dL) / 18 + BUN (mg/dL) / 2.8."]
    if rng.random() < 0.5:
        g = round(glu / GLU_MGDL_PER_MMOL, 1)
        glu = g * GLU_MGDL_PER_MMOL
        gtext = f"glucose {g} mmol/L"
        steps.append(f"Glucose {g} mmol/L × {GLU_MGDL_PER_MMOL} = {_r(glu)} mg/dL.")
    else:
        glu = round(glu)
        gtext = f"glucose {glu} mg/dL"
        steps.append(f"Glucose is {glu} mg/dL.")
    if rng.random() < 0.5:
        u = round(bun / BUN_MGDL_PER_UREA_MMOL, 1)
        bun = u * BUN_MGDL_PER_UREA_MMOL
        btext = f"urea {u} mmol/L"
        steps.append(f"Urea {u} mmol/L corresponds to BUN {u} × {BUN_MGDL_PER_UREA_MMOL} = {_r(bun)} mg/dL.")
    else:
        bun = round(bun)
        btext = f"BUN {bun} mg/dL"
        steps.append(f"BUN is {bun} mg/dL.")
    value = 2 * na + glu / 18 + bun / 2.8
    steps.append(f"Osmolality = 2 × {na} + {_r(glu)} / 18 + {_r(bun)} / 2.8 = {_r(value)} mOsm/kg.")
    note = f"{_opening(rng, age, sex)} {_distractors(rng)} Labs: sodium {na} mmol/L, {gtext}, {btext}."
    return SynthCase("Serum Osmolality", note, "What is the patient's calculated serum osmolality in mOsm/kg?",
                     steps, _r(value), 3)


def sodium_correction(rng) -> SynthCase:
    age, sex = _patient(rng)
    na = int(rng.integers(122, 142))
    glu = float(rng.uniform(150, 800))
    steps = ["Katz: corrected sodium = sodium + 0.024 × (glucose in mg/dL - 100)."]
    if rng.random() < 0.5:
        g = round(glu / GLU_MGDL_PER_MMOL, 1)
        glu = g * GLU_MGDL_PER_MMOL
        gtext = f"{g} mmol/L"
        steps.append(f"Glucose {g} mmol/L × {GLU_MGDL_PER_MMOL} = {_r(glu)} mg/dL.")
    else:
        glu = round(glu)
        gtext = f"{glu} mg/dL"
        steps.append(f"Glucose is {glu} mg/dL.")
    value = na + 0.024 * (glu - 100)
    steps.append(f"Corrected sodium = {na} + 0.024 × ({_r(glu)} - 100) = {_r(value)} mEq/L.")
    note = f"{_opening(rng, age, sex)} {_distractors(rng)} Labs: sodium {na} mEq/L, glucose {gtext}."
    return SynthCase("Sodium Correction for Hyperglycemia", note,
                     "What is the patient's sodium corrected for hyperglycemia in mEq/L?", steps, _r(value), 3)


def body_surface_area(rng) -> SynthCase:
    age, sex = _patient(rng)
    kg, wtext, wsteps = _weight(rng, sex)
    cm, htext, hsteps = _height(rng, sex)
    value = math.sqrt(cm * kg / 3600)
    note = f"{_opening(rng, age, sex)} Height {htext}, weight {wtext}. {_distractors(rng)}"
    steps = ["Mosteller: BSA = sqrt(height (cm) × weight (kg) / 3600).", *wsteps, *hsteps,
             f"BSA = sqrt({_r(cm)} × {_r(kg)} / 3600) = {_r(value)} m^2."]
    return SynthCase("Body Surface Area", note, "What is the patient's body surface area in m^2?",
                     steps, _r(value), 3)


def maintenance_fluids(rng) -> SynthCase:
    age, sex = _patient(rng)
    kg, wtext, wsteps = _weight(rng, sex)
    value = 4 * 10 + 2 * 10 + 1 * (kg - 20)  # all weights here exceed 20 kg
    note = f"{_opening(rng, age, sex)} Weight {wtext}. {_distractors(rng)}"
    steps = ["4-2-1 rule: 4 mL/h for each of the first 10 kg, 2 mL/h for each of the next 10 kg, "
             "1 mL/h for each kg above 20 kg.", *wsteps,
             f"Rate = 40 + 20 + ({_r(kg)} - 20) = {_r(value)} mL/h."]
    return SynthCase("Maintenance Fluids", note, "What is the patient's maintenance fluid rate in mL/h?",
                     steps, _r(value), 3)


CALCULATORS: dict[str, Callable[[np.random.Generator], SynthCase]] = {
    "bmi": bmi,
    "cockcroft_gault": cockcroft_gault,
    "map": mean_arterial_pressure,
    "anion_gap": anion_gap,
    "corrected_calcium": corrected_calcium,
    "qtc_bazett": qtc_bazett,
    "ldl": ldl_friedewald,
    "ideal_body_weight": ideal_body_weight,
    "free_water_deficit": free_water_deficit,
    "serum_osmolality": serum_osmolality,
    "sodium_correction": sodium_correction,
    "body_surface_area": body_surface_area,
    "maintenance_fluids": maintenance_fluids,
}


def generate_cases(n: int, seed: int = 0) -> list[SynthCase]:
    """``n`` cases, cycling through the calculators in a fixed order, one seeded generator per case
    (so case i is the same whatever ``n`` is)."""
    names = list(CALCULATORS)
    cases = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        cases.append(CALCULATORS[names[i % len(names)]](rng))
    return cases
