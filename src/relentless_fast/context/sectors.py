"""The sector scheme of the daily context: eleven sectors assigned from EDGAR SIC codes.

GICS membership is licensed, so companies are mapped through the Standard Industrial Classification
code EDGAR publishes for every filer (``sic`` in the submissions JSON). ``SECTORS`` is the fixed
order used by the context embedding; never reorder it (append only, with a new embedding version).
"""

from __future__ import annotations

SECTORS: tuple[str, ...] = (
    "energy",
    "materials",
    "industrials",
    "consumer_discretionary",
    "consumer_staples",
    "healthcare",
    "financials",
    "technology",
    "communication",
    "utilities",
    "real_estate",
)
"""Sector names in embedding order."""

SECTOR_INDEX: dict[str, int] = {name: i for i, name in enumerate(SECTORS)}

# (first SIC, last SIC, sector), checked in order: narrow ranges come before the wide ones.
_SIC_RANGES: tuple[tuple[int, int, str], ...] = (
    (1311, 1389, "energy"),  # crude oil, natural gas, drilling and field services
    (2830, 2836, "healthcare"),  # drugs, biologicals
    (2840, 2844, "consumer_staples"),  # soaps, cleaners, cosmetics
    (2900, 2999, "energy"),  # petroleum refining
    (3570, 3579, "technology"),  # computers and office machines
    (3630, 3639, "consumer_discretionary"),  # household appliances
    (3711, 3716, "consumer_discretionary"),  # motor vehicles
    (3720, 3729, "industrials"),  # aircraft
    (3760, 3769, "industrials"),  # guided missiles, space vehicles
    (3812, 3812, "industrials"),  # search, navigation, guidance (defence electronics)
    (3840, 3859, "healthcare"),  # medical instruments and supplies
    (5122, 5122, "healthcare"),  # drugs wholesale
    (5140, 5149, "consumer_staples"),  # groceries wholesale
    (5331, 5331, "consumer_staples"),  # variety stores (general merchandise, groceries)
    (5400, 5499, "consumer_staples"),  # food stores
    (5912, 5912, "consumer_staples"),  # drug stores
    (6324, 6324, "healthcare"),  # hospital and medical service plans (health insurers)
    (6798, 6798, "real_estate"),  # real estate investment trusts
    (7370, 7379, "technology"),  # computer programming, software, data processing
    (7900, 7999, "consumer_discretionary"),  # amusement and recreation
    (100, 999, "consumer_staples"),  # agriculture
    (1000, 1499, "materials"),  # mining (metal, coal, minerals)
    (1500, 1799, "industrials"),  # construction
    (2000, 2199, "consumer_staples"),  # food, beverages, tobacco
    (2200, 2399, "consumer_discretionary"),  # textiles, apparel
    (2400, 2499, "materials"),  # lumber
    (2500, 2599, "consumer_discretionary"),  # furniture
    (2600, 2699, "materials"),  # paper
    (2700, 2799, "communication"),  # printing, publishing
    (2800, 2899, "materials"),  # chemicals
    (3000, 3099, "materials"),  # rubber, plastics
    (3100, 3199, "consumer_discretionary"),  # leather
    (3200, 3399, "materials"),  # stone, glass, primary metals
    (3400, 3569, "industrials"),  # fabricated metals, machinery
    (3580, 3599, "industrials"),  # other machinery
    (3600, 3699, "technology"),  # electronic equipment, semiconductors
    (3700, 3799, "industrials"),  # other transportation equipment
    (3800, 3899, "technology"),  # instruments
    (3900, 3999, "consumer_discretionary"),  # miscellaneous manufacturing
    (4000, 4799, "industrials"),  # transportation
    (4800, 4899, "communication"),  # telephone, broadcasting, cable
    (4900, 4999, "utilities"),  # electric, gas, water, sanitary
    (5000, 5199, "industrials"),  # wholesale
    (5200, 5999, "consumer_discretionary"),  # retail
    (6000, 6499, "financials"),  # banks, brokers, insurance
    (6500, 6599, "real_estate"),  # real estate
    (6700, 6799, "financials"),  # holding and investment offices
    (7000, 7299, "consumer_discretionary"),  # hotels, personal services
    (7300, 7399, "industrials"),  # business services
    (7800, 7899, "communication"),  # motion pictures
    (8000, 8099, "healthcare"),  # health services
    (8100, 8999, "industrials"),  # legal, engineering, management services
    (9100, 9729, "industrials"),  # public administration
)


def sector_for_sic(sic: int | str | None) -> str:
    """The sector of an SIC code; ``""`` when the code is missing or outside the scheme."""
    if sic is None or sic == "":
        return ""
    try:
        code = int(sic)
    except (TypeError, ValueError):
        return ""
    for lo, hi, sector in _SIC_RANGES:
        if lo <= code <= hi:
            return sector
    return ""
