"""Phrases the synthetic generator writes into narrative extracts.

These are the generator's side of the contract with the text readers: every sentence the
generator can produce is built from the templates below, so the tests of the CD19 lexicon and of
the EM assertion reader iterate over all of them. The readers are meant to handle far more than
this (see tests/data/ for the hand-written sets); this is only what synthetic data contains.
"""

from __future__ import annotations

# --- CD19 wording of the narrative flow laboratory, by true class -------------------------
CD19_PHRASES: dict[str, tuple[str, ...]] = {
    "negative": (
        "CD19 negative",
        "CD19 negative, CD22 positive",
        "loss of CD19 expression",
        "CD19 not expressed",
        "CD19-",
        "CD19 absent on blasts",
        "CD19neg/CD22pos",
        "CD19 (-)",
        "CD19 negtive",
        "CD19 neg",
        "CD19 positive (3%)",
        "CD19 present on <2% of blasts",
        "CD22 bright, CD19 negative",
        "CD10+, CD19-, CD34+",
        "CD19 dim to negative",
    ),
    "dim": (
        "CD19 dim",
        "CD19 weak",
        "partial loss of CD19",
        "CD19 low",
        "CD19 partially lost",
        "CD19 dim (partial)",
        "CD19 weak, partial (30%)",
        "CD19 dimmish",
        "dim CD19, bright CD22",
        "CD19 weakly positive",
        "CD19 heterogeneous",
        "CD19 moderate to dim",
    ),
    "moderate": (
        "CD19 moderate",
        "CD19 positive (moderate)",
        "CD19 moderately expressed",
        "CD19 intermediate",
        "CD19 2+",
        "CD19 moderate (70%)",
    ),
    "strong": (
        "CD19 bright",
        "CD19 strong",
        "CD19 3+",
        "CD19 (90%) bright",
        "CD19 strongly positive",
        "CD19 positive",
        "CD19+",
        "CD19(+)",
        "CD19pos",
        "CD19 positive (85%)",
        "Blasts: CD10+, CD19(+), CD34-",
        "CD19 postive",
    ),
}

# --- EM sites: group -> (noun form, ICD-O-3 topography) the generator names -----------------
# The noun form must read naturally after "the" and before "involvement"/"mass".
EM_SITE_TERMS: dict[str, tuple[tuple[str, str], ...]] = {
    "cns": (("leptomeninges", "C70.9"), ("brain", "C71.9")),
    "eye_orbit": (("orbit", "C69.6"),),
    "testis": (("testis", "C62.9"),),
    "skin": (("skin", "C44.9"),),
    "lymph_node": (("cervical lymph nodes", "C77.0"), ("inguinal lymph nodes", "C77.4")),
    "mediastinum": (("mediastinum", "C38.3"),),
    "bone": (("femur", "C40.2"),),
    "soft_tissue": (("soft tissue", "C49.9"), ("psoas muscle", "C49.4")),
    "breast": (("breast", "C50.9"),),
    "kidney": (("kidney", "C64.9"),),
    "liver": (("liver", "C22.0"),),
    "spleen": (("spleen", "C42.2"),),
    "pleura": (("pleura", "C38.4"),),
    "ovary": (("ovary", "C56.9"),),
    "parotid": (("parotid gland", "C07.9"),),
    "gi_tract": (("stomach", "C16.9"), ("small bowel", "C17.9")),
    "adrenal": (("adrenal gland", "C74.9"),),
    "pancreas": (("pancreas", "C25.9"),),
}

# Sites that have a side; the generator states laterality for these.
LATERAL_GROUPS: frozenset[str] = frozenset(
    {"testis", "eye_orbit", "breast", "kidney", "ovary", "parotid", "adrenal"}
)

# --- EM sentence templates by true assertion ---------------------------------------------
# {site}: noun form from EM_SITE_TERMS, prefixed by laterality ("left testis") when stated.
# Sentences start with a capital letter when rendered; templates are written lower-case-first
# where {site} comes first.
#
# Besides {site}/{Site}, a template may name the bare site noun ({noun}/{Noun}) with the side
# after it ({lat_after}: ", left" or nothing), as pathology headers do ("Testis, left, biopsy:").
# The templates include the wordings real reports use and the reader once got wrong
# (issue 17): negation after the site, normal-organ sentences, hedges, resolution, headers.
EM_TEMPLATES: dict[str, tuple[str, ...]] = {
    "present": (
        "{Site} mass consistent with leukemic infiltration.",
        "Findings consistent with extramedullary leukemia involving the {site}.",
        "Enlarged {site} with leukemic infiltration.",
        "Interval development of leukemic infiltration of the {site}.",
        "New {site} lesion, biopsy-proven B-lymphoblastic leukemia.",
        "{Noun}{lat_after}, biopsy: involved by B-lymphoblastic leukemia.",
        "There is a new {site} mass, compatible with leukemic involvement.",
        "{Site} is enlarged and heterogeneous, consistent with leukemic infiltration.",
        "No change in the {site} mass, consistent with persistent leukemic disease.",
    ),
    "absent": (
        "No evidence of leukemic involvement of the {site}.",
        "No {site} lesion is identified.",
        "The {site} is unremarkable without evidence of leukemic infiltration.",
        "Negative for leukemic involvement of the {site}.",
        "A {site} lesion is not identified.",
        "The {site} shows no focal lesion.",
        "The {site} is normal.",
        "{Noun}{lat_after}, biopsy: negative for leukemia.",
        "Leukemic involvement of the {site} has not been seen on this study.",
    ),
    "possible": (
        "New {site} enlargement concerning for leukemic infiltration.",
        "Cannot exclude leukemic involvement of the {site}.",
        "Possible leukemic involvement of the {site}.",
        "Leukemic involvement of the {site} cannot be ruled out.",
        "Findings in the {site} are worrisome for leukemic infiltration.",
        "{Site} enlargement, more likely reactive than leukemic.",
        "Differential considerations include leukemic infiltration of the {site}.",
    ),
    "historical": (
        "History of leukemic involvement of the {site}.",
        "Prior extramedullary relapse in the {site}, treated with radiation.",
        "Known history of leukemic infiltration of the {site}.",
        "Status post radiation for a {site} relapse.",
    ),
    "resolved": (
        "Previously noted {site} infiltration has resolved.",
        "Interval resolution of leukemic involvement of the {site}.",
        "The previously seen {site} lesion is no longer identified.",
        "The {site} infiltration has since resolved.",
    ),
    # an indication or a plan: the disease is neither stated nor denied
    "hypothetical": (
        "MRI to assess for leukemic involvement of the {site}.",
        "Plan: MRI of the {site} to rule out leukemic involvement.",
        "Ultrasound requested to evaluate for leukemic infiltration of the {site}.",
        "Follow-up imaging to assess for relapse in the {site}.",
    ),
}

# Templates that fit some site groups only, drawn beside the templates above for those groups:
# normal-organ sentences (no disease word), node lists (one statement naming several node
# regions; the regions are the template's own words) and "soft tissue density in the {site}"
# (soft tissue describes the site: the reader must find only the site itself).
_SOFT_TISSUE_DENSITY_GROUPS = ("eye_orbit", "breast", "mediastinum", "parotid", "adrenal")
EM_GROUP_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "absent": {
        "lymph_node": (
            "No supraclavicular or axillary adenopathy.",
            "No cervical, axillary or inguinal lymphadenopathy.",
            "No mediastinal or retroperitoneal lymph node enlargement.",
        ),
        "spleen": ("The {site} is normal in size.", "The {site} is not enlarged."),
        "liver": ("The {site} is normal in size and echotexture.",),
        "kidney": ("The {site} is normal in size.",),
        "testis": ("The {site} is normal in size and echotexture.",),
    },
    "possible": {
        g: ("Soft tissue density in the {site}, concerning for leukemic infiltration.",)
        for g in _SOFT_TISSUE_DENSITY_GROUPS
    },
    "present": {
        g: ("Soft tissue density in the {site}, consistent with leukemic infiltration.",)
        for g in _SOFT_TISSUE_DENSITY_GROUPS
    },
}


def em_templates(assertion: str, group: str) -> tuple[str, ...]:
    """Every template the generator may write for a statement of `assertion` about `group`."""
    return EM_TEMPLATES[assertion] + EM_GROUP_TEMPLATES.get(assertion, {}).get(group, ())


# Sentences with no EM mention that pad reports.
EM_FILLER: tuple[str, ...] = (
    "Comparison is made with the prior examination.",
    "Technique: standard protocol without complications.",
    "Degenerative changes of the lower lumbar spine.",
    "Small hiatal hernia.",
    "ALLERGIES: None.",
    "No complications.",
)
