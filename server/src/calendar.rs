//! The working-day calendar: the State Council's holiday schedule with its
//! make-up working days (调休), vendored from the public holiday-cn data set
//! (`server/data/holidays/`, one JSON file a year) so that the server never
//! reads anything outside its own data at run time.
//!
//! A day is a working day if the schedule lists it with `isOffDay: false`
//! (a make-up day, even on a weekend), a rest day if listed with `isOffDay:
//! true`, and otherwise Monday to Friday.
//!
//! A year the calendar has no schedule for (the State Council publishes next
//! year's in November or December; agencies plan before that) is answered two
//! ways. The strict questions (`is_working_day`, `add_working_days`,
//! `working_days_between`) refuse it: statistics that judge whether a result
//! was published on time must not judge by a guess. Deadlines (`deadline`,
//! `working_days_left`) count its Mondays to Fridays as working days and say
//! that the answer is provisional, naming the years; the answer becomes final
//! when an admin loads the year, and may then move (a holiday week pushes a
//! deadline later, a make-up Saturday pulls it earlier).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::Deserialize;

/// The schedules shipped with the server, one per year.
const OFFICIAL: &[&str] = &[
    include_str!("../data/holidays/2019.json"),
    include_str!("../data/holidays/2020.json"),
    include_str!("../data/holidays/2021.json"),
    include_str!("../data/holidays/2022.json"),
    include_str!("../data/holidays/2023.json"),
    include_str!("../data/holidays/2024.json"),
    include_str!("../data/holidays/2025.json"),
    include_str!("../data/holidays/2026.json"),
];

/// Why a calendar question cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The calendar has no holiday schedule for this year.
    #[error(
        "the working-day calendar has no official holiday schedule for {0}; an admin must load it"
    )]
    NoData(i32),
    /// A schedule file could not be read.
    #[error("invalid holiday schedule: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct YearFile {
    year: i32,
    days: Vec<DayEntry>,
}

#[derive(Deserialize)]
struct DayEntry {
    date: NaiveDate,
    #[serde(rename = "isOffDay")]
    is_off_day: bool,
}

/// A date counted in working days, with the years whose schedule it had to do
/// without (counting their Mondays to Fridays as working days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted<T> {
    /// The date or the count.
    pub value: T,
    /// Years without a schedule the count went through; empty when it is final.
    pub unscheduled_years: Vec<i32>,
}

impl<T> Counted<T> {
    /// Whether the answer is provisional: some year on the way has no schedule.
    pub fn provisional(&self) -> bool {
        !self.unscheduled_years.is_empty()
    }
}

/// Working days for the years whose schedules are loaded.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    years: BTreeSet<i32>,
    /// Listed days: `true` = rest day (holiday), `false` = make-up working day.
    listed: BTreeMap<NaiveDate, bool>,
}

impl Calendar {
    /// The calendar with every schedule shipped with the server (2019–2026).
    pub fn official() -> Calendar {
        let mut calendar = Calendar::default();
        for json in OFFICIAL {
            calendar
                .load_year(json)
                .expect("shipped holiday schedules are valid");
        }
        calendar
    }

    /// Adds (or replaces) one year's schedule in holiday-cn's JSON format.
    /// Returns the year.
    pub fn load_year(&mut self, json: &str) -> Result<i32, CalendarError> {
        let file: YearFile =
            serde_json::from_str(json).map_err(|e| CalendarError::Invalid(e.to_string()))?;
        if !(2000..=2100).contains(&file.year) {
            return Err(CalendarError::Invalid(format!(
                "year {} out of range",
                file.year
            )));
        }
        self.listed.retain(|d, _| d.year() != file.year);
        for day in file.days {
            // Files may list a neighbouring year's day; such days are kept
            // without marking that year as covered.
            self.listed.insert(day.date, day.is_off_day);
        }
        self.years.insert(file.year);
        Ok(file.year)
    }

    /// Years with a schedule.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.iter().copied()
    }

    /// Whether a schedule for `year` is loaded.
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    /// Whether `date` is a working day, counting Monday to Friday in a year
    /// without a schedule (the caller learns which through `covers`).
    fn is_working_day_or_weekday(&self, date: NaiveDate) -> bool {
        match self.is_working_day(date) {
            Ok(working) => working,
            Err(_) => !matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
        }
    }

    /// The years in `from` (exclusive) to `to` (inclusive) without a schedule.
    fn unscheduled_between(&self, from: NaiveDate, to: NaiveDate) -> Vec<i32> {
        let (start, end) = if from <= to { (from, to) } else { (to, from) };
        let first = start.succ_opt().map_or(start.year(), |d| d.year());
        (first..=end.year()).filter(|y| !self.covers(*y)).collect()
    }

    /// The deadline `n` working days after `date`, as `add_working_days`
    /// counts it, except that a year without a schedule never refuses: its
    /// Mondays to Fridays count, and the answer is provisional.
    pub fn deadline(&self, date: NaiveDate, n: u32) -> Counted<NaiveDate> {
        let mut day = date;
        let mut left = n;
        while left > 0 {
            // Dates end in the year 262143; a deadline never gets near it.
            day = day.succ_opt().unwrap_or(day);
            if self.is_working_day_or_weekday(day) {
                left -= 1;
            }
        }
        Counted {
            value: day,
            unscheduled_years: self.unscheduled_between(date, day),
        }
    }

    /// Working days after `today` up to and including `deadline` (negative
    /// once it has passed), as `working_days_between` counts them, except that
    /// a year without a schedule counts its Mondays to Fridays, provisionally.
    pub fn working_days_left(&self, today: NaiveDate, deadline: NaiveDate) -> Counted<i64> {
        let (start, end, sign) = if today <= deadline {
            (today, deadline, 1)
        } else {
            (deadline, today, -1)
        };
        let count = start
            .iter_days()
            .skip(1)
            .take_while(|d| *d <= end)
            .filter(|d| self.is_working_day_or_weekday(*d))
            .count() as i64;
        Counted {
            value: sign * count,
            unscheduled_years: self.unscheduled_between(today, deadline),
        }
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        if !self.years.contains(&date.year()) {
            return Err(CalendarError::NoData(date.year()));
        }
        Ok(match self.listed.get(&date) {
            Some(off) => !off,
            None => !matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
        })
    }

    /// The date `n` working days after `date`: the first working day after
    /// `date` is one working day after it. `n = 0` gives `date` itself.
    pub fn add_working_days(&self, date: NaiveDate, n: u32) -> Result<NaiveDate, CalendarError> {
        let mut day = date;
        let mut left = n;
        while left > 0 {
            day = day
                .checked_add_days(Days::new(1))
                .ok_or(CalendarError::NoData(i32::MAX))?;
            if self.is_working_day(day)? {
                left -= 1;
            }
        }
        Ok(day)
    }

    /// Working days after `from` up to and including `to` (negative if `to`
    /// is before `from`): how many working days are left until a deadline.
    pub fn working_days_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<i64, CalendarError> {
        let (start, end, sign) = if from <= to {
            (from, to, 1)
        } else {
            (to, from, -1)
        };
        let mut count = 0;
        for day in start.iter_days().skip(1).take_while(|d| *d <= end) {
            if self.is_working_day(day)? {
                count += 1;
            }
        }
        Ok(sign * count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn spring_festival_2026_and_its_make_up_saturdays() {
        let cal = Calendar::official();
        assert!(
            cal.is_working_day(d("2026-02-14")).unwrap(),
            "Saturday 14 Feb is a make-up day"
        );
        assert!(
            !cal.is_working_day(d("2026-02-16")).unwrap(),
            "Monday in the holiday"
        );
        assert!(
            cal.is_working_day(d("2026-02-28")).unwrap(),
            "Saturday 28 Feb is a make-up day"
        );
        assert_eq!(
            cal.add_working_days(d("2026-02-13"), 1).unwrap(),
            d("2026-02-14")
        );
        assert_eq!(
            cal.add_working_days(d("2026-02-14"), 1).unwrap(),
            d("2026-02-24")
        );
        // From Friday 13 Feb: 14 (Sat), 24, 25, 26, 27, 28 (Sat), 2 Mar ...
        assert_eq!(
            cal.add_working_days(d("2026-02-13"), 6).unwrap(),
            d("2026-02-28")
        );
        assert_eq!(
            cal.add_working_days(d("2026-02-13"), 7).unwrap(),
            d("2026-03-02")
        );
        assert_eq!(
            cal.working_days_between(d("2026-02-13"), d("2026-02-24"))
                .unwrap(),
            2
        );
        assert_eq!(
            cal.working_days_between(d("2026-02-24"), d("2026-02-13"))
                .unwrap(),
            -2
        );
    }

    #[test]
    fn national_day_2025() {
        let cal = Calendar::official();
        assert!(
            cal.is_working_day(d("2025-09-28")).unwrap(),
            "Sunday 28 Sep is a make-up day"
        );
        assert!(
            cal.is_working_day(d("2025-10-11")).unwrap(),
            "Saturday 11 Oct is a make-up day"
        );
        assert!(!cal.is_working_day(d("2025-10-08")).unwrap());
        assert_eq!(
            cal.add_working_days(d("2025-09-26"), 1).unwrap(),
            d("2025-09-28")
        );
        assert_eq!(
            cal.add_working_days(d("2025-09-30"), 1).unwrap(),
            d("2025-10-09")
        );
        assert_eq!(
            cal.add_working_days(d("2025-10-10"), 1).unwrap(),
            d("2025-10-11")
        );
        // 20 working days after 30 Sep 2025: 9, 10, 11 (Sat), 13–17, 20–24, 27–31, 3 Nov, 4 Nov.
        assert_eq!(
            cal.add_working_days(d("2025-09-30"), 20).unwrap(),
            d("2025-11-04")
        );
    }

    #[test]
    fn ordinary_weekends_are_rest_days() {
        let cal = Calendar::official();
        assert_eq!(
            cal.add_working_days(d("2026-03-06"), 1).unwrap(),
            d("2026-03-09")
        );
        assert_eq!(
            cal.add_working_days(d("2026-03-06"), 0).unwrap(),
            d("2026-03-06")
        );
    }

    #[test]
    fn a_year_without_data_is_an_error_not_a_guess() {
        let cal = Calendar::official();
        assert_eq!(
            cal.is_working_day(d("2027-01-05")),
            Err(CalendarError::NoData(2027))
        );
        assert_eq!(
            cal.add_working_days(d("2026-12-20"), 20),
            Err(CalendarError::NoData(2027))
        );
        assert_eq!(
            cal.is_working_day(d("2018-06-01")),
            Err(CalendarError::NoData(2018))
        );
    }

    #[test]
    fn a_deadline_in_a_year_without_data_is_provisional_and_final_once_loaded() {
        let mut cal = Calendar::official();
        // 21 December 2026 + 20 working days, 2027 counted Monday to Friday:
        // 22–25, 28–31 December, 1, 4–8, 11–15, 18 January.
        let provisional = cal.deadline(d("2026-12-21"), 20);
        assert_eq!(provisional.value, d("2027-01-18"));
        assert_eq!(provisional.unscheduled_years, vec![2027]);
        assert!(provisional.provisional());
        let left = cal.working_days_left(d("2026-12-21"), provisional.value);
        assert_eq!((left.value, left.provisional()), (20, true));
        // Within 2026 nothing changes: final, and as the strict count.
        let within = cal.deadline(d("2026-09-30"), 20);
        assert_eq!(within.value, d("2026-11-03"));
        assert!(!within.provisional());
        assert_eq!(
            cal.working_days_left(d("2026-11-04"), within.value),
            Counted {
                value: -1,
                unscheduled_years: vec![]
            }
        );
        // A deadline ending on 31 December is final even though 1 January is not covered.
        assert!(!cal.deadline(d("2026-12-30"), 1).provisional());

        // The schedule arrives: New Year's Day is a rest day, and the deadline moves a day later.
        cal.load_year(r#"{"year": 2027, "papers": [], "days": [{"name": "元旦", "date": "2027-01-01", "isOffDay": true}]}"#)
            .unwrap();
        let fin = cal.deadline(d("2026-12-21"), 20);
        assert_eq!(fin.value, d("2027-01-19"));
        assert!(!fin.provisional());
        assert_eq!(
            cal.add_working_days(d("2026-12-21"), 20).unwrap(),
            fin.value,
            "the final deadline is the strict count"
        );
    }

    #[test]
    fn an_admin_can_load_a_newer_year() {
        let mut cal = Calendar::official();
        let year = cal
            .load_year(r#"{"year": 2027, "papers": [], "days": [{"name": "元旦", "date": "2027-01-01", "isOffDay": true}]}"#)
            .unwrap();
        assert_eq!(year, 2027);
        assert!(!cal.is_working_day(d("2027-01-01")).unwrap());
        assert!(cal.is_working_day(d("2027-01-04")).unwrap());
        assert!(matches!(
            cal.load_year("{}"),
            Err(CalendarError::Invalid(_))
        ));
    }
}
